package ostree

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeRef(t *testing.T) {
	tests := []struct{ in, want string }{
		{"docker://quay.io/fedora/fedora-coreos:stable", "docker_3A__2F__2F_quay_2E_io/fedora/fedora-coreos_3A_stable"},
		{"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "sha256_3A_2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"},
		{"oci:/path/to/layout:tag", "oci_3A__2F_path/to/layout_3A_tag"},
		{"a_b", "a__b"},
		{"_", "__"},
		{"/", "_2F_"},
		{"/leading", "_2F_leading"},
		{"trailing/", "trailing_2F_"},
		{"a//b", "a/_2F_b"},
		{"a-/b", "a-_2F_b"}, // '/' after '-' (not alphanumeric) is escaped
		{"a/-b", "a/-b"},
		{"a.b", "a_2E_b"},
		{"A-Z-09", "A-Z-09"},
		{"é", "_E9_"},
		{"€", "_20AC_"},
		{"\U0001F600", "_1F600_"},
		{"\x01", "_01_"},
		{" ", "_20_"},
		{"x/é/y", "x/_E9__2F_y"},
	}
	for _, tc := range tests {
		got, err := EscapeRef(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("EscapeRef(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		if !validRefName(got) {
			t.Errorf("EscapeRef(%q) = %q is not a valid ref name", tc.in, got)
		}
		back, err := UnescapeRef(got)
		if err != nil || back != tc.in {
			t.Errorf("UnescapeRef(%q) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
}

func TestEscapeRefErrors(t *testing.T) {
	for _, in := range []string{"", "\x00", "a\x00b", "\xff", "a\xc3"} {
		if got, err := EscapeRef(in); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("EscapeRef(%q) = %q, %v; want ErrInvalidRef", in, got, err)
		}
	}
}

func TestUnescapeRefRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		"",          // empty
		"_",         // lone underscore
		"a_3A",      // unterminated
		"__3A_",     // "__" then unterminated
		"_3a_",      // lower-case hex
		"_3_",       // one digit
		"_003A_",    // extra leading zeros
		"_0E9_",     // leading zero over two digits
		"_110000_",  // beyond U+10FFFF
		"_D800_",    // surrogate
		"_1234567_", // too long
		"_00_",      // NUL
		"_41_",      // 'A' is never escaped
		"_2D_",      // '-' is never escaped
		"_5F_",      // '_' is escaped as "__"
		"a_2F_b",    // '/' after an alphanumeric, not last: kept literally
		"/a",        // leading '/'
		"a/",        // trailing '/'
		"a//b",      // '/' after '/'
		"a-/b",      // '/' after '-'
		"a.b",       // '.' is always escaped
		"a b",       // space
		"é",         // raw non-ASCII
		"_G1_",      // not hex
		"_+1_",      // sign
	} {
		if got, err := UnescapeRef(in); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("UnescapeRef(%q) = %q, %v; want ErrInvalidRef", in, got, err)
		}
	}
}

func TestImageAndBlobRefNames(t *testing.T) {
	got, err := ImageRefName("docker://quay.io/fedora/fedora-coreos:stable")
	if want := "ostree/container/image/docker_3A__2F__2F_quay_2E_io/fedora/fedora-coreos_3A_stable"; err != nil || got != want {
		t.Errorf("ImageRefName = %q, %v; want %q", got, err, want)
	}
	back, err := ImageReferenceFromRefName(got)
	if err != nil || back != "docker://quay.io/fedora/fedora-coreos:stable" {
		t.Errorf("ImageReferenceFromRefName(%q) = %q, %v", got, back, err)
	}
	if _, err := ImageReferenceFromRefName("ostree/container/blob/sha256_3A_00"); !errors.Is(err, ErrInvalidRef) {
		t.Errorf("ImageReferenceFromRefName of a blob ref: %v; want ErrInvalidRef", err)
	}
	if _, err := ImageRefName(""); !errors.Is(err, ErrInvalidRef) {
		t.Errorf("ImageRefName(\"\"): %v; want ErrInvalidRef", err)
	}
	// Each component of the ref is a file name: at most NAME_MAX bytes.
	for n, ok := range map[int]bool{255: true, 256: false} {
		_, err := ImageRefName("docker://r/" + strings.Repeat("a", n))
		if ok != (err == nil) || !ok && !errors.Is(err, ErrInvalidRef) {
			t.Errorf("ImageRefName with a %d-byte component: %v", n, err)
		}
	}

	digest := "sha256:" + strings.Repeat("ab", 32)
	got, err = BlobRefName(digest)
	if want := "ostree/container/blob/sha256_3A_" + strings.Repeat("ab", 32); err != nil || got != want {
		t.Errorf("BlobRefName = %q, %v; want %q", got, err, want)
	}
	for _, d := range []string{"", "sha256", ":abc", "sha256:", "SHA256:ab", "sha256:a/b", "sha+:ab", "+sha:ab", "sh..a:ab", "sha256:a\x00"} {
		if got, err := BlobRefName(d); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("BlobRefName(%q) = %q, %v; want ErrInvalidRef", d, got, err)
		}
	}
	for _, d := range []string{"sha512:AbC=_-", "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"} {
		if _, err := BlobRefName(d); err != nil {
			t.Errorf("BlobRefName(%q): %v", d, err)
		}
	}
}

func FuzzEscapeRoundTrip(f *testing.F) {
	for _, s := range []string{"docker://quay.io/fedora/fedora-coreos:stable", "sha256:abc", "_", "/", "a/", "€é", "a__2F_b", "_20AC_", "x/_E9__2F_y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		esc, err := EscapeRef(s)
		valid := s != "" && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
		if valid != (err == nil) {
			t.Fatalf("EscapeRef(%q) error = %v, input valid = %v", s, err, valid)
		}
		if err == nil {
			if !validRefName(esc) && !slices.ContainsFunc(strings.Split(esc, "/"), func(c string) bool { return len(c) > maxRefFragment }) {
				t.Fatalf("EscapeRef(%q) = %q is not a valid ref name", s, esc)
			}
			back, err := UnescapeRef(esc)
			if err != nil || back != s {
				t.Fatalf("UnescapeRef(EscapeRef(%q) = %q) = %q, %v", s, esc, back, err)
			}
		}
		// Unescaping arbitrary input never panics, and accepts only
		// EscapeRef's own output.
		un, err := UnescapeRef(s)
		if err == nil {
			again, err := EscapeRef(un)
			if err != nil || again != s {
				t.Fatalf("UnescapeRef(%q) = %q, which escapes to %q, %v", s, un, again, err)
			}
		}
	})
}
