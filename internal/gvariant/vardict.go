package gvariant

import (
	"fmt"
	"slices"
)

// VarDict is a dictionary of type a{sv} that keeps its entries in order,
// duplicates included, as they were read or added.
type VarDict []VarEntry

// VarEntry is one entry of a VarDict.
type VarEntry struct {
	Key   string
	Value Variant
}

var (
	varDictType  = mustParseType("a{sv}")
	varEntryType = varDictType.elem
)

// UnmarshalVarDict decodes a normal-form a{sv}. Empty data is the empty
// dictionary, returned as a non-nil VarDict. Errors are as for Unmarshal.
func UnmarshalVarDict(data []byte) (VarDict, error) {
	it, err := newElemIter(varDictType, data, 0)
	if err != nil {
		return nil, err
	}
	d := make(VarDict, it.n)
	for i := range d {
		lo, hi, err := it.next()
		if err != nil {
			return nil, err
		}
		err = walkTuple(varEntryType, data[lo:hi], lo, func(j int, f *typeNode, b []byte, off int) (err error) {
			if j == 0 {
				d[i].Key, err = decodeString(f, b, off)
			} else {
				d[i].Value, err = decodeVariant(b, off, 2)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Marshal returns the normal-form serialisation of d as a{sv}; the empty
// dictionary is zero bytes. Errors are as for the package's Marshal.
func (d VarDict) Marshal() ([]byte, error) {
	e := encoder{buf: []byte{}}
	if err := e.array(varDictType, d, 0); err != nil {
		return nil, err
	}
	return e.buf, nil
}

func (e *encoder) varEntry(v VarEntry, level int) error {
	return e.tuple(varEntryType, func(i int, f *typeNode) error {
		if i == 0 {
			return e.text(f, v.Key)
		}
		return e.variant(v.Value, level+1)
	})
}

// Lookup returns the value of the first entry with the given key.
func (d VarDict) Lookup(key string) (Variant, bool) {
	if i := d.index(key); i >= 0 {
		return d[i].Value, true
	}
	return Variant{}, false
}

// LookupString returns the string value of the first entry with the given
// key. A missing key gives ("", false, nil); a present one whose value is
// not a string gives ("", true, err) with err wrapping ErrTypeMismatch.
func (d VarDict) LookupString(key string) (string, bool, error) {
	v, ok := d.Lookup(key)
	if !ok {
		return "", false, nil
	}
	s, isString := v.Value.(string)
	if v.Type != "s" || !isString {
		return "", true, fmt.Errorf("%w: key %q holds a %s (%T), not a string", ErrTypeMismatch, key, v.Type, v.Value)
	}
	return s, true, nil
}

// Set gives key the value v: the first entry with the key takes the new
// value where it stands and later entries with the key are dropped; with no
// such entry, one is appended.
func (d *VarDict) Set(key string, v Variant) {
	i := d.index(key)
	if i < 0 {
		*d = append(*d, VarEntry{Key: key, Value: v})
		return
	}
	(*d)[i].Value = v
	rest := slices.DeleteFunc((*d)[i+1:], func(e VarEntry) bool { return e.Key == key })
	*d = (*d)[:i+1+len(rest)]
}

// Delete removes every entry with the given key and reports whether there
// was any.
func (d *VarDict) Delete(key string) bool {
	n := len(*d)
	*d = slices.DeleteFunc(*d, func(e VarEntry) bool { return e.Key == key })
	return len(*d) != n
}

func (d VarDict) index(key string) int {
	return slices.IndexFunc(d, func(e VarEntry) bool { return e.Key == key })
}
