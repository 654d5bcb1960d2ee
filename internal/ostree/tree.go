package ostree

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/osimage/updatecache/internal/gvariant"
)

// GVariant types of the tree objects.
const (
	dirTreeType = "(a(say)a(sayay))"
	dirMetaType = "(uuua(ayay))"
)

// ErrInvalidFilename: a dirtree entry name is empty, ".", "..", contains
// '/' or NUL, or appears twice.
var ErrInvalidFilename = errors.New("ostree: invalid file name")

// Xattr is one extended attribute. OSTree serialises the name as a byte
// string with its terminating NUL (as libostree does) and the value as is.
//
// A list of xattrs is serialised in its order. Writers that read xattrs
// from a file system or a tar sort them by name, as libostree does, but
// libostree's SELinux labelling appends security.selinux after the others
// without sorting, so a header or dirmeta read back may hold any order;
// its checksum covers that order.
type Xattr struct {
	Name  string
	Value []byte
}

// DirTreeFile is a dirtree's file entry: a name and a content checksum.
type DirTreeFile struct{ Name, Checksum string }

// DirTreeDir is a dirtree's directory entry: a name and the checksums of
// the subdirectory's dirtree and dirmeta.
type DirTreeDir struct{ Name, TreeChecksum, MetaChecksum string }

// xattrsValue returns xattrs as the GVariant value of an a(ayay), in
// their order.
func xattrsValue(xattrs []Xattr) []any {
	v := make([]any, len(xattrs))
	for i, x := range xattrs {
		v[i] = []any{append([]byte(x.Name), 0), x.Value}
	}
	return v
}

// decodeXattrs converts a decoded a(ayay), requiring NUL-terminated,
// non-empty, unique names (in any order, see Xattr).
func decodeXattrs(v any) ([]Xattr, error) {
	list, _ := v.([]any)
	xattrs := make([]Xattr, 0, len(list))
	for _, e := range list {
		pair, _ := e.([]any)
		if len(pair) != 2 {
			return nil, errors.New("xattr is not a pair")
		}
		name, _ := pair[0].([]byte)
		value, _ := pair[1].([]byte)
		if len(name) < 2 || name[len(name)-1] != 0 || bytes.IndexByte(name[:len(name)-1], 0) >= 0 {
			return nil, fmt.Errorf("xattr name %q is not a non-empty NUL-terminated string", name)
		}
		xattrs = append(xattrs, Xattr{Name: string(name[:len(name)-1]), Value: value})
	}
	if len(xattrs) > 1 {
		names := make([]string, len(xattrs))
		for i, x := range xattrs {
			names[i] = x.Name
		}
		slices.Sort(names)
		for i := 1; i < len(names); i++ {
			if names[i] == names[i-1] {
				return nil, fmt.Errorf("xattr %q repeated", names[i])
			}
		}
	}
	return xattrs, nil
}

// SortXattrs sorts xattrs by name in place, the order libostree reads
// them from a file system in.
func SortXattrs(xattrs []Xattr) {
	slices.SortFunc(xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
}

// dirMetaModeMask is the st_mode bits a dirmeta may carry: the type (which
// must be a directory) and the permissions.
const dirMetaModeMask = ModeTypeMask | ModePermsMask

// EncodeDirMeta serialises a dirmeta object (uuua(ayay)): uid, gid and
// st_mode big-endian (as OSTree stores them), xattrs in their order. The
// mode must be a directory's, and xattr names unique, non-empty and free of
// NUL.
func EncodeDirMeta(uid, gid, mode uint32, xattrs []Xattr) ([]byte, error) {
	if mode&ModeTypeMask != ModeDir || mode&^dirMetaModeMask != 0 {
		return nil, fmt.Errorf("%w: dirmeta mode %#o is not a directory's", ErrInvalidObject, mode)
	}
	v := xattrsValue(xattrs)
	// The decoder's checks (names non-empty, NUL-free, unique) are
	// exactly what the encoder must ensure.
	if _, err := decodeXattrs(v); err != nil {
		return nil, fmt.Errorf("dirmeta: %w", err)
	}
	return gvariant.Marshal(dirMetaType, []any{be32(uid), be32(gid), be32(mode), v})
}

// DecodeDirMeta parses a dirmeta object strictly (normal form, a
// directory's mode, unique NUL-terminated xattr names); anything else
// wraps ErrCorrupt.
func DecodeDirMeta(data []byte) (uid, gid, mode uint32, xattrs []Xattr, err error) {
	v, err := gvariant.Unmarshal(dirMetaType, data)
	if err != nil {
		return 0, 0, 0, nil, fmt.Errorf("%w: dirmeta: %w", ErrCorrupt, err)
	}
	t := v.([]any)
	uid, gid, mode = be32(t[0].(uint32)), be32(t[1].(uint32)), be32(t[2].(uint32))
	if mode&ModeTypeMask != ModeDir || mode&^dirMetaModeMask != 0 {
		return 0, 0, 0, nil, fmt.Errorf("%w: dirmeta mode %#o is not a directory's", ErrCorrupt, mode)
	}
	if xattrs, err = decodeXattrs(t[3]); err != nil {
		return 0, 0, 0, nil, fmt.Errorf("%w: dirmeta: %w", ErrCorrupt, err)
	}
	return uid, gid, mode, xattrs, nil
}

// validFilename is libostree's rule for a name in a dirtree: non-empty, not
// "." or "..", no '/'. GVariant strings already exclude NUL.
func validFilename(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

// checksumBytes converts a hex checksum to the 32 raw bytes OSTree stores.
func checksumBytes(s string) ([]byte, error) {
	if !ValidChecksum(s) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidChecksum, s)
	}
	return hex.DecodeString(s)
}

// checksumHex converts 32 stored bytes back to hex.
func checksumHex(b []byte) (string, error) {
	if len(b) != 32 {
		return "", fmt.Errorf("%w: %d bytes, want 32", ErrInvalidChecksum, len(b))
	}
	return hex.EncodeToString(b), nil
}

// EncodeDirTree serialises a dirtree object (a(say)a(sayay)) with each list
// sorted by name (strcmp order, as libostree requires). Names must be valid
// file names, unique across both lists (ErrInvalidFilename); checksums
// valid (ErrInvalidChecksum).
func EncodeDirTree(files []DirTreeFile, dirs []DirTreeDir) ([]byte, error) {
	files = slices.Clone(files)
	dirs = slices.Clone(dirs)
	slices.SortFunc(files, func(a, b DirTreeFile) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(dirs, func(a, b DirTreeDir) int { return strings.Compare(a.Name, b.Name) })
	fv := make([]any, len(files))
	for i, f := range files {
		sum, err := checksumBytes(f.Checksum)
		if err != nil {
			return nil, fmt.Errorf("dirtree file %q: %w", f.Name, err)
		}
		fv[i] = []any{f.Name, sum}
	}
	dv := make([]any, len(dirs))
	for i, d := range dirs {
		tree, err := checksumBytes(d.TreeChecksum)
		if err != nil {
			return nil, fmt.Errorf("dirtree dir %q: %w", d.Name, err)
		}
		meta, err := checksumBytes(d.MetaChecksum)
		if err != nil {
			return nil, fmt.Errorf("dirtree dir %q: %w", d.Name, err)
		}
		dv[i] = []any{d.Name, tree, meta}
	}
	if err := checkDirTreeNames(files, dirs); err != nil {
		return nil, fmt.Errorf("dirtree: %w", err)
	}
	return gvariant.Marshal(dirTreeType, []any{fv, dv})
}

// checkDirTreeNames requires valid names, each list strictly increasing,
// and no name in both lists (a merge walk over the two sorted lists).
func checkDirTreeNames(files []DirTreeFile, dirs []DirTreeDir) error {
	for i, f := range files {
		if !validFilename(f.Name) || i > 0 && files[i-1].Name >= f.Name {
			return fmt.Errorf("%w: file %q is invalid, repeated or out of order", ErrInvalidFilename, f.Name)
		}
	}
	for i, d := range dirs {
		if !validFilename(d.Name) || i > 0 && dirs[i-1].Name >= d.Name {
			return fmt.Errorf("%w: directory %q is invalid, repeated or out of order", ErrInvalidFilename, d.Name)
		}
	}
	for i, j := 0, 0; i < len(files) && j < len(dirs); {
		switch c := strings.Compare(files[i].Name, dirs[j].Name); {
		case c == 0:
			return fmt.Errorf("%w: %q is both a file and a directory", ErrInvalidFilename, files[i].Name)
		case c < 0:
			i++
		default:
			j++
		}
	}
	return nil
}

// DecodeDirTree parses a dirtree object strictly: normal form, 32-byte
// checksums, valid names sorted and unique. Anything else wraps ErrCorrupt.
func DecodeDirTree(data []byte) ([]DirTreeFile, []DirTreeDir, error) {
	v, err := gvariant.Unmarshal(dirTreeType, data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: dirtree: %w", ErrCorrupt, err)
	}
	t := v.([]any)
	fl, dl := t[0].([]any), t[1].([]any)
	files := make([]DirTreeFile, len(fl))
	for i, e := range fl {
		m := e.([]any)
		sum, err := checksumHex(m[1].([]byte))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: dirtree file %q: %w", ErrCorrupt, m[0], err)
		}
		files[i] = DirTreeFile{Name: m[0].(string), Checksum: sum}
	}
	dirs := make([]DirTreeDir, len(dl))
	for i, e := range dl {
		m := e.([]any)
		tree, err := checksumHex(m[1].([]byte))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: dirtree dir %q: %w", ErrCorrupt, m[0], err)
		}
		meta, err := checksumHex(m[2].([]byte))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: dirtree dir %q: %w", ErrCorrupt, m[0], err)
		}
		dirs[i] = DirTreeDir{Name: m[0].(string), TreeChecksum: tree, MetaChecksum: meta}
	}
	if err := checkDirTreeNames(files, dirs); err != nil {
		return nil, nil, fmt.Errorf("%w: dirtree: %w", ErrCorrupt, err)
	}
	return files, dirs, nil
}
