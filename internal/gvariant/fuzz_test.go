package gvariant

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzRoundTrip checks that decoding then encoding is the identity on
// everything Unmarshal accepts, and that everything it refuses is refused
// with ErrMalformed rather than a panic. Seeds: the reference vectors, the
// GLib vectors and testdata/fuzz/FuzzRoundTrip.
func FuzzRoundTrip(f *testing.F) {
	for _, v := range referenceVectors {
		f.Add(v.typ, unhex(f, v.hex))
	}
	for _, v := range loadGLibVectors(f) {
		if len(v.data) <= 512 {
			f.Add(v.typ, v.data)
		}
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		if CheckType(typ) != nil {
			return
		}
		v, err := Unmarshal(typ, data)
		if err != nil {
			var de *DecodeError
			if !errors.Is(err, ErrMalformed) || !errors.As(err, &de) {
				t.Fatalf("Unmarshal(%q, %x): %v is not a *DecodeError", typ, data, err)
			}
			return
		}
		again, err := Marshal(typ, v)
		if err != nil {
			t.Fatalf("Marshal(%q, %#v) of accepted %x: %v", typ, v, data, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("%q: decoded %x and re-encoded it as %x", typ, data, again)
		}
		if typ == "a{sv}" {
			d, err := UnmarshalVarDict(data)
			if err != nil {
				t.Fatalf("UnmarshalVarDict(%x): %v, but Unmarshal accepted it", data, err)
			}
			if again, err := d.Marshal(); err != nil || !bytes.Equal(again, data) {
				t.Fatalf("VarDict of %x re-encoded as %x, %v", data, again, err)
			}
		}
	})
}
