package gvariant

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestUnmarshalMalformed(t *testing.T) {
	deepVariant := "05 00 79" + strings.Repeat(" 00 76", 127) // 128 variants around a byte
	deepArray := "05"                                         // 128 arrays around a byte
	for i := 1; i < 128; i++ {
		deepArray += fmt.Sprintf(" %02x", i)
	}
	tests := []struct {
		name, typ, hex string
		offset         int    // expected DecodeError.Offset
		reason         string // expected substring of DecodeError.Reason
	}{
		{"truncated number", "u", "070000", 0, "3 bytes, want 4"},
		{"truncated tuple", "(sst)", "6100 6200 0000 0000 0100000000000000 04", 0, "interior NUL"},
		{"truncated array", "as", "6100 626300 02", 0, "element 0 ends at 98, outside 0..2"},
		{"truncated variant", "v", "07000000 00", 5, `type string "": unexpected end at byte 0`},
		{"empty variant", "v", "", 0, "no NUL"},
		{"offset out of range", "as", "6100 626300 02 09", 6, "beyond the array"},
		{"element offset past table", "aay", "0102 03 04 02 05 04", 2, "element 1 ends at 5, outside 2..4"},
		{"decreasing offsets", "aay", "0102 03 04 03 02 04", 3, "element 1 ends at 2, outside 3..4"},
		{"overlapping tuple members", "(ayayay)", "01 02 03 01 02", 2, "member 1 ends at 1, outside 2..3"},
		{"tuple offset past table", "(ayay)", "01 02 03", 0, "member 0 ends at 3"},
		{"non-minimal array offsets", "as", strings.Repeat("61", 253) + "00 fe00", 254, "2-byte framing offsets where 1-byte ones fit"},
		{"non-minimal tuple offsets", "(ss)", strings.Repeat("61", 252) + "00 00 fd00", 254, "2-byte framing offsets"},
		{"empty tuple without its offset", "(asas)", "", 0, "0-byte framing offsets"},
		{"offset table not whole", "aay", "01", 1, "offset table of 0 bytes"},
		{"no room for offsets", "(ayay)", "", 0, "framing offsets"},
		{"gap before offsets", "(ayy)", "01 02 00 01", 2, "1 bytes between"},
		{"non-zero padding", "(yu)", "01 ff0000 02000000", 1, "padding byte is 0xff"},
		{"non-zero trailing padding", "(uy)", "01000000 02 000100", 6, "padding byte is 0x1"},
		{"non-zero padding in array", "a(xs)", "0100000000000000 6100 010000000000 0200000000000000 00 0a 19", 10, "padding byte is 0x1"},
		{"non-zero unit", "()", "01", 0, "padding byte is 0x1"},
		{"boolean 2", "b", "02", 0, "boolean byte is 2"},
		{"boolean in array", "ab", "00 01 02", 2, "boolean byte is 2"},
		{"missing NUL", "s", "61", 0, "missing NUL"},
		{"empty string data", "s", "", 0, "missing NUL"},
		{"interior NUL", "s", "61 00 62 00", 0, "interior NUL at byte 1"},
		{"invalid UTF-8", "s", "ff 00", 0, "invalid UTF-8"},
		{"UTF-16 surrogate", "s", "eda080 00", 0, "invalid UTF-8"},
		{"bad object path", "o", "2f61 2f 00", 0, "not an object path"},
		{"relative object path", "o", "61 00", 0, "not an object path"},
		{"signature with maybe", "g", "6d79 00", 0, "not a signature"},
		{"incomplete signature", "g", "28 00", 0, "not a signature"},
		{"variant with two types", "v", "07000000 00 7575", 5, "trailing characters"},
		{"variant with indefinite type", "v", "07000000 00 72", 5, "not a definite type"},
		{"variant child too short", "v", "070000 00 75", 0, "3 bytes, want 4"},
		{"variant child too long", "v", "0700000000 00 75", 0, "5 bytes, want 4"},
		{"variant nested too deep", "v", deepVariant, 0, "type y nested inside 128 containers"},
		{"variant type too deep for its place", "v", "00 61 28 29" + strings.Repeat(" 00 76", 127), 0, "type a() nested inside 128 containers"},
		{"array elements too deep", strings.Repeat("a", 128) + "y", deepArray, 0, "elements nested inside 128 containers"},
		{"tuple members too deep", strings.Repeat("a", 127) + "(y)", "01" + deepArray[2:], 0, "nested inside 128 containers"},
		{"maybe value too deep", strings.Repeat("a", 127) + "my", "01" + deepArray[2:], 0, "nested inside 128 containers"},
		{"trailing bytes after number", "u", "0700000000", 0, "5 bytes, want 4"},
		{"trailing bytes after array", "as", "6100 626300 02 05 00", 0, "element 0 ends at 97"},
		{"trailing bytes after dict", "a{sv}", "6b00000000000000 7600007302 0d 00", 0, "element 0 ends at 107"},
		{"partial fixed-size element", "au", "0100000002", 0, "not a whole number of 4-byte elements"},
		{"partial fixed-size tuple element", "a(yy)", "010203", 0, "not a whole number of 2-byte elements"},
		{"maybe of fixed type wrong size", "my", "0102", 0, "2 bytes, want 1"},
		{"maybe without its zero byte", "ms", "6100 01", 2, "last byte is 0x1"},
		{"maybe of empty string", "ms", "00", 0, "missing NUL"},
		{"key offset past its entry", "a{sv}", "6b00000000000000 760000730e 0d", 0, "member 0 ends at 14, outside 0..12"},
		{"bad key in dict", "a{sv}", "ff00000000000000 7600007302 0d", 0, "invalid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			de := checkMalformed(t, tc.typ, unhex(t, tc.hex))
			if de.Offset != tc.offset || !strings.Contains(de.Reason, tc.reason) {
				t.Errorf("got %v (offset %d); want offset %d, reason containing %q", de, de.Offset, tc.offset, tc.reason)
			}
		})
	}
}

func TestUnmarshalInvalidType(t *testing.T) {
	for _, typ := range []string{"", "r", "a", "ss", "{vs}"} {
		if _, err := Unmarshal(typ, nil); !errors.Is(err, ErrInvalidType) {
			t.Errorf("Unmarshal(%q): %v, want ErrInvalidType", typ, err)
		}
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	_, err := Unmarshal("(yu)", unhex(t, "01ff000002000000"))
	want := "gvariant: malformed (yu) at offset 1: padding byte is 0xff, want 0"
	if err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}
