package gvariant

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestCheckType(t *testing.T) {
	valid := []string{
		"b", "y", "n", "q", "i", "u", "x", "t", "h", "d", "s", "o", "g", "v",
		"a{sv}", "(a{sv}aya(say)sstayay)", "()", "{sv}", "{yv}", "mv", "mmas", "a(())",
		strings.Repeat("a", MaxDepth) + "y", strings.Repeat("(", MaxDepth) + strings.Repeat(")", MaxDepth),
	}
	for _, typ := range valid {
		if err := CheckType(typ); err != nil {
			t.Errorf("CheckType(%q): %v", typ, err)
		}
	}
	invalid := []string{
		"", "r", "*", "?", "m", "a", "(", ")", "(s", "x)", "Z", "ii", "as ", "{sv", "{s}", "{sss}",
		"{vs}", "{as}", "{()s}", "a{sv}}", strings.Repeat("a", MaxDepth+1) + "y",
		strings.Repeat("m", MaxDepth+1) + "y", strings.Repeat("(", MaxDepth+1) + strings.Repeat(")", MaxDepth+1),
	}
	for _, typ := range invalid {
		err := CheckType(typ)
		if !errors.Is(err, ErrInvalidType) {
			t.Errorf("CheckType(%q) = %v, want ErrInvalidType", typ, err)
		}
	}
}

func TestTypeErrorMessage(t *testing.T) {
	err := CheckType("a{vs}")
	want := `gvariant: invalid type string "a{vs}": dict entry key must be a basic type at byte 2`
	if err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// deepVariant nests n variants around a byte.
func deepVariant(n int) Variant {
	v := Variant{Type: "y", Value: byte(5)}
	for i := 1; i < n; i++ {
		v = Variant{Type: "v", Value: v}
	}
	return v
}

func TestMarshalErrors(t *testing.T) {
	cycle := make([]any, 1) // a value that contains itself, through a variant
	cycle[0] = Variant{Type: "av", Value: cycle}
	tests := []struct {
		name, typ string
		value     any
		want      error
	}{
		{"bad type", "r", nil, ErrInvalidType},
		{"int for u", "u", 5, ErrTypeMismatch},
		{"int64 for i", "i", int64(5), ErrTypeMismatch},
		{"string for o", "o", "/a", ErrTypeMismatch},
		{"string with NUL", "s", "a\x00b", ErrTypeMismatch},
		{"string not UTF-8", "s", "\xff", ErrTypeMismatch},
		{"bad object path", "o", ObjectPath("/a/"), ErrTypeMismatch},
		{"bad signature", "g", Signature("my"), ErrTypeMismatch},
		{"short tuple", "(ss)", []any{"a"}, ErrTypeMismatch},
		{"tuple member", "(ss)", []any{"a", 1}, ErrTypeMismatch},
		{"unit with member", "()", []any{1}, ErrTypeMismatch},
		{"nil for tuple", "(s)", nil, ErrTypeMismatch},
		{"array element", "ay", []any{1}, ErrTypeMismatch},
		{"[]byte for as", "as", []byte("x"), ErrTypeMismatch},
		{"[]string for ay", "ay", []string{"x"}, ErrTypeMismatch},
		{"[]string with NUL", "as", []string{"a\x00"}, ErrTypeMismatch},
		{"[]DictEntry for as", "as", []DictEntry{}, ErrTypeMismatch},
		{"VarDict for a{ss}", "a{ss}", VarDict{}, ErrTypeMismatch},
		{"map for a{sv}", "a{sv}", map[string]Variant{}, ErrTypeMismatch},
		{"dict entry key", "a{sv}", []DictEntry{{1, NewString("x")}}, ErrTypeMismatch},
		{"lone dict entry", "{sv}", []any{"k", NewString("v")}, ErrTypeMismatch},
		{"variant value", "v", Variant{Type: "u", Value: "x"}, ErrTypeMismatch},
		{"variant type", "v", Variant{Type: "uu", Value: uint32(1)}, ErrInvalidType},
		{"empty variant", "v", Variant{}, ErrInvalidType},
		{"pointer to variant", "v", &Variant{Type: "u", Value: uint32(1)}, ErrTypeMismatch},
		{"nothing with value", "mu", Maybe{Value: uint32(1)}, ErrTypeMismatch},
		{"maybe value", "mu", Maybe{Valid: true, Value: "x"}, ErrTypeMismatch},
		{"VarDict key", "a{sv}", VarDict{{"\xff", NewString("v")}}, ErrTypeMismatch},
		{"VarDict value", "a{sv}", VarDict{{"k", Variant{Type: "s", Value: 1}}}, ErrTypeMismatch},
		{"deep variants", "v", deepVariant(MaxDepth), ErrTooDeep},
		{"variant type too deep for its place", "av", []any{Variant{Type: strings.Repeat("a", MaxDepth-1) + "y", Value: []any{}}}, ErrTooDeep},
		{"deep bytes", strings.Repeat("a", MaxDepth) + "y", nest(MaxDepth-1, []byte{1}), ErrTooDeep},
		{"deep strings", strings.Repeat("a", MaxDepth) + "s", nest(MaxDepth-1, []string{"x"}), ErrTooDeep},
		{"deep tuple members", strings.Repeat("a", MaxDepth-1) + "(y)", nest(MaxDepth-1, []any{byte(1)}), ErrTooDeep},
		{"cycle", "av", cycle, ErrTooDeep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.typ, tc.value)
			if !errors.Is(err, tc.want) || got != nil {
				t.Errorf("Marshal(%s, %#v) = %x, %v; want error wrapping %v", tc.typ, tc.value, got, err, tc.want)
			}
		})
	}
}

// nest wraps inner in n arrays of one element each.
func nest(n int, inner any) any {
	for i := 0; i < n; i++ {
		inner = []any{inner}
	}
	return inner
}

// TestMarshalDepthLimit checks the deepest values that are allowed, which
// GLib accepts too (see the depth vectors in glib_vectors.txt).
func TestMarshalDepthLimit(t *testing.T) {
	tests := []struct {
		typ   string
		value any
	}{
		{"v", deepVariant(MaxDepth - 1)},
		{strings.Repeat("a", MaxDepth-1) + "y", nest(MaxDepth-2, []byte{1})},
		{strings.Repeat("a", MaxDepth) + "y", nest(MaxDepth-1, []byte{})},
		{strings.Repeat("a", MaxDepth-1) + "s", nest(MaxDepth-2, []string{"x"})},
	}
	for _, tc := range tests {
		data, err := Marshal(tc.typ, tc.value)
		if err != nil {
			t.Fatalf("Marshal(%.10s…): %v", tc.typ, err)
		}
		if _, err := Unmarshal(tc.typ, data); err != nil {
			t.Fatalf("Unmarshal(%.10s…): %v", tc.typ, err)
		}
	}
}

// TestMarshalConveniences checks the Go types Marshal accepts besides the
// ones Unmarshal produces.
func TestMarshalConveniences(t *testing.T) {
	tests := []struct {
		typ         string
		value, same any
	}{
		{"as", []string{"a", "bc"}, []any{"a", "bc"}},
		{"a{sv}", VarDict{{"k", NewString("v")}}, []DictEntry{{"k", NewString("v")}}},
		{"ay", []any{byte(1), byte(2)}, []byte{1, 2}},
		{"a{sv}", []any{DictEntry{"k", NewString("v")}}, []DictEntry{{"k", NewString("v")}}},
		{"as", []string(nil), []any{}},
		{"ay", []byte(nil), []byte{}},
		{"a{sv}", VarDict(nil), []DictEntry{}},
		{"v", Variant{Type: "a{sv}", Value: VarDict{{"k", NewString("v")}}}, Variant{Type: "a{sv}", Value: []DictEntry{{"k", NewString("v")}}}},
	}
	for _, tc := range tests {
		a, err := Marshal(tc.typ, tc.value)
		if err != nil {
			t.Fatalf("Marshal(%s, %#v): %v", tc.typ, tc.value, err)
		}
		b, err := Marshal(tc.typ, tc.same)
		if err != nil {
			t.Fatalf("Marshal(%s, %#v): %v", tc.typ, tc.same, err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("Marshal(%s): %#v gives %x, %#v gives %x", tc.typ, tc.value, a, tc.same, b)
		}
	}
}

func TestMarshalEmptyIsNotNil(t *testing.T) {
	for _, typ := range []string{"as", "ay", "a{sv}", "ms"} {
		var v any = []any{}
		if typ == "ms" {
			v = Maybe{}
		}
		b, err := Marshal(typ, v)
		if err != nil || b == nil || len(b) != 0 {
			t.Errorf("Marshal(%s, empty) = %#v, %v; want empty non-nil", typ, b, err)
		}
	}
}

// TestDoubleBits checks that doubles keep their exact bits, NaN payloads
// and the sign of zero included.
func TestDoubleBits(t *testing.T) {
	for _, bits := range []uint64{0, 1 << 63, 0x7ff0000000000001, 0xfff8000000000000, 0x7ff4000000000abc} {
		data, err := Marshal("d", math.Float64frombits(bits))
		if err != nil {
			t.Fatal(err)
		}
		v, err := Unmarshal("d", data)
		if err != nil {
			t.Fatal(err)
		}
		if got := math.Float64bits(v.(float64)); got != bits || le.Uint64(data) != bits {
			t.Errorf("bits %#x came back as %#x (%x)", bits, got, data)
		}
	}
}

func TestOffsetWidths(t *testing.T) {
	tests := []struct{ size, reader int }{
		{0, 0}, {1, 1}, {255, 1}, {256, 2}, {65535, 2}, {65536, 4}, {1<<32 - 1, 4}, {1 << 32, 8},
	}
	for _, tc := range tests {
		if got := offsetWidth(tc.size); got != tc.reader {
			t.Errorf("offsetWidth(%d) = %d, want %d", tc.size, got, tc.reader)
		}
	}
	writer := []struct{ body, n, want int }{
		{0, 1, 1}, {254, 1, 1}, {253, 2, 1}, {254, 2, 2}, {65533, 1, 2}, {65534, 1, 4},
		{1<<32 - 5, 1, 4}, {1<<32 - 4, 1, 8},
	}
	for _, tc := range writer {
		w := writerOffsetWidth(tc.body, tc.n)
		if w != tc.want {
			t.Errorf("writerOffsetWidth(%d, %d) = %d, want %d", tc.body, tc.n, w, tc.want)
		}
		// What the writer picks, the reader derives from the total size.
		if r := offsetWidth(tc.body + tc.n*w); r != w {
			t.Errorf("body %d with %d offsets: writer width %d, reader width %d", tc.body, tc.n, w, r)
		}
	}
	for _, tc := range []struct{ v, w int }{{0xab, 1}, {0xabcd, 2}, {0xabcdef01, 4}, {1 << 40, 8}} {
		b := appendOffset(nil, tc.v, tc.w)
		if len(b) != tc.w || readOffset(b) != uint64(tc.v) {
			t.Errorf("offset %#x width %d: %x reads back as %#x", tc.v, tc.w, b, readOffset(b))
		}
	}
}

// TestTypeCacheBound checks that arbitrary type strings cannot grow the
// parsed-type cache without limit.
func TestTypeCacheBound(t *testing.T) {
	for i := 0; i < 2*typeCacheMax; i++ {
		typ := "(" + strings.Repeat("y", i+1) + ")"
		if _, err := Marshal(typ, make([]any, i+1)); !errors.Is(err, ErrTypeMismatch) {
			t.Fatalf("Marshal(%s): %v", typ, err)
		}
	}
	n := 0
	typeCache.Range(func(any, any) bool { n++; return true })
	if n > typeCacheMax {
		t.Errorf("type cache holds %d types, bound is %d", n, typeCacheMax)
	}
}
