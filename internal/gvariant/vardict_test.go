package gvariant

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestVarDictReferenceVectors(t *testing.T) {
	tests := []struct {
		d   VarDict
		hex string
	}{
		{VarDict{}, ""},
		{VarDict{{"k", NewString("v")}}, "6b00000000000000 7600007302 0d"},
		{VarDict{{"dk", NewString("dv")}, {"dk2", NewString("dv2")}},
			"646b000000000000 64760000 7303 0000 646b3200 00000000 64763200 0073 04 0e 1f"},
	}
	for _, tc := range tests {
		want := unhex(t, tc.hex)
		got, err := tc.d.Marshal()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%v.Marshal() = %x, %v; want %x", tc.d, got, err, want)
		}
		back, err := UnmarshalVarDict(want)
		if err != nil || !reflect.DeepEqual(back, tc.d) {
			t.Errorf("UnmarshalVarDict(%x) = %#v, %v; want %#v", want, back, err, tc.d)
		}
	}
}

func TestUnmarshalVarDictEmpty(t *testing.T) {
	for _, data := range [][]byte{nil, {}} {
		d, err := UnmarshalVarDict(data)
		if err != nil || d == nil || len(d) != 0 {
			t.Errorf("UnmarshalVarDict(%#v) = %#v, %v; want empty non-nil", data, d, err)
		}
	}
	if b, err := (VarDict{}).Marshal(); err != nil || b == nil || len(b) != 0 {
		t.Errorf("empty VarDict marshals to %#v, %v; want empty non-nil", b, err)
	}
}

// TestVarDictAgreesWithUnmarshal checks UnmarshalVarDict and VarDict.Marshal
// against the generic path on every a{sv} vector GLib produced or judged.
func TestVarDictAgreesWithUnmarshal(t *testing.T) {
	n := 0
	for _, v := range loadGLibVectors(t) {
		if v.typ != "a{sv}" {
			continue
		}
		n++
		d, err := UnmarshalVarDict(v.data)
		if v.verdict != "normal" {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("line %d: UnmarshalVarDict(%x) = %v, %v; want ErrMalformed", v.line, v.data, d, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("line %d: UnmarshalVarDict(%x): %v", v.line, v.data, err)
		}
		entries := v.value.([]DictEntry)
		if len(d) != len(entries) {
			t.Fatalf("line %d: %d entries, want %d", v.line, len(d), len(entries))
		}
		for i, e := range entries {
			if d[i].Key != e.Key || !sameValue(d[i].Value, e.Value) {
				t.Errorf("line %d entry %d: %#v, want %#v", v.line, i, d[i], e)
			}
		}
		if b, err := d.Marshal(); err != nil || !bytes.Equal(b, v.data) {
			t.Errorf("line %d: Marshal = %x, %v; want %x", v.line, b, err, v.data)
		}
	}
	if n < 100 {
		t.Fatalf("only %d a{sv} vectors", n)
	}
}

func TestVarDictLookup(t *testing.T) {
	d := VarDict{
		{"s", NewString("first")},
		{"n", Variant{Type: "u", Value: uint32(3)}},
		{"s", NewString("second")},
		{"odd", Variant{Type: "s", Value: 5}}, // built by hand, wrongly
	}
	if v, ok := d.Lookup("s"); !ok || v != NewString("first") {
		t.Errorf(`Lookup("s") = %v, %v`, v, ok)
	}
	if v, ok := d.Lookup("missing"); ok || v != (Variant{}) {
		t.Errorf(`Lookup("missing") = %v, %v`, v, ok)
	}
	tests := []struct {
		key     string
		want    string
		present bool
		err     error
	}{
		{"s", "first", true, nil},
		{"missing", "", false, nil},
		{"n", "", true, ErrTypeMismatch},
		{"odd", "", true, ErrTypeMismatch},
	}
	for _, tc := range tests {
		s, ok, err := d.LookupString(tc.key)
		if s != tc.want || ok != tc.present || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("LookupString(%q) = %q, %v, %v; want %q, %v, %v", tc.key, s, ok, err, tc.want, tc.present, tc.err)
		}
	}
}

func TestVarDictSetDelete(t *testing.T) {
	a, b, c := NewString("a"), NewString("b"), NewString("c")
	x := Variant{Type: "t", Value: uint64(9)}
	tests := []struct {
		name string
		d    VarDict
		op   func(*VarDict) bool
		want VarDict
		ret  bool
	}{
		{"set appends", VarDict{{"k1", a}}, func(d *VarDict) bool { d.Set("k2", b); return true },
			VarDict{{"k1", a}, {"k2", b}}, true},
		{"set on nil", nil, func(d *VarDict) bool { d.Set("k", a); return true },
			VarDict{{"k", a}}, true},
		{"set replaces in place", VarDict{{"k1", a}, {"k2", b}, {"k3", c}}, func(d *VarDict) bool { d.Set("k2", x); return true },
			VarDict{{"k1", a}, {"k2", x}, {"k3", c}}, true},
		{"set drops later duplicates", VarDict{{"k", a}, {"o", b}, {"k", b}, {"p", c}, {"k", c}}, func(d *VarDict) bool { d.Set("k", x); return true },
			VarDict{{"k", x}, {"o", b}, {"p", c}}, true},
		{"delete all occurrences", VarDict{{"k", a}, {"o", b}, {"k", c}}, func(d *VarDict) bool { return d.Delete("k") },
			VarDict{{"o", b}}, true},
		{"delete missing", VarDict{{"o", b}}, func(d *VarDict) bool { return d.Delete("k") },
			VarDict{{"o", b}}, false},
		{"delete last", VarDict{{"k", a}}, func(d *VarDict) bool { return d.Delete("k") },
			VarDict{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d
			if ret := tc.op(&d); ret != tc.ret || !reflect.DeepEqual(d, tc.want) {
				t.Errorf("got %v, %v; want %v, %v", d, ret, tc.want, tc.ret)
			}
		})
	}
}

func TestVarDictMarshalKeepsOrderAndDuplicates(t *testing.T) {
	d := VarDict{{"z", NewString("1")}, {"a", Variant{Type: "as", Value: []string{"x"}}}, {"z", NewString("2")}}
	data, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalVarDict(data)
	if err != nil {
		t.Fatal(err)
	}
	want := VarDict{{"z", NewString("1")}, {"a", Variant{Type: "as", Value: []any{"x"}}}, {"z", NewString("2")}}
	if !reflect.DeepEqual(back, want) {
		t.Errorf("round trip gave %#v, want %#v", back, want)
	}
}

func TestVarDictMarshalErrors(t *testing.T) {
	tests := []struct {
		d    VarDict
		want error
	}{
		{VarDict{{"k", Variant{Type: "s", Value: 1}}}, ErrTypeMismatch},
		{VarDict{{"k\x00", NewString("v")}}, ErrTypeMismatch},
		{VarDict{{"k", Variant{Type: "sv", Value: "v"}}}, ErrInvalidType},
		{VarDict{{"k", deepVariant(MaxDepth - 1)}}, ErrTooDeep},
	}
	for _, tc := range tests {
		if b, err := tc.d.Marshal(); !errors.Is(err, tc.want) || b != nil {
			t.Errorf("%#v.Marshal() = %x, %v; want error wrapping %v", tc.d, b, err, tc.want)
		}
	}
}
