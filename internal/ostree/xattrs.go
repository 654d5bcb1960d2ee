package ostree

import (
	"fmt"

	"github.com/osimage/updatecache/internal/gvariant"
)

// xattrsType is how OSTree serialises a file's extended attributes.
const xattrsType = "a(ayay)"

// EncodeXattrs serialises xattrs as the a(ayay) OSTree keeps in headers,
// dirmeta and ostree-ext's tar streams: names with their NUL, in their
// order. Names must be non-empty, unique and free of NUL.
func EncodeXattrs(xattrs []Xattr) ([]byte, error) {
	v := xattrsValue(xattrs)
	if _, err := decodeXattrs(v); err != nil {
		return nil, fmt.Errorf("ostree: xattrs: %w", err)
	}
	return gvariant.Marshal(xattrsType, v)
}

// DecodeXattrs parses an a(ayay) strictly: normal form, unique
// NUL-terminated names (in any order, see Xattr). Anything else wraps
// ErrCorrupt.
func DecodeXattrs(data []byte) ([]Xattr, error) {
	v, err := gvariant.Unmarshal(xattrsType, data)
	if err != nil {
		return nil, fmt.Errorf("%w: xattrs: %w", ErrCorrupt, err)
	}
	xattrs, err := decodeXattrs(v)
	if err != nil {
		return nil, fmt.Errorf("%w: xattrs: %w", ErrCorrupt, err)
	}
	return xattrs, nil
}
