package ostree

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"strings"
	"unicode/utf8"

	"github.com/osimage/updatecache/internal/gvariant"
)

// File type bits of st_mode, as OSTree records them in headers and dirmeta.
const (
	ModeTypeMask  uint32 = 0o170000 // S_IFMT
	ModeDir       uint32 = 0o040000 // S_IFDIR
	ModeRegular   uint32 = 0o100000 // S_IFREG
	ModeSymlink   uint32 = 0o120000 // S_IFLNK
	ModePermsMask uint32 = 0o7777
)

// contentObjectType is the type the repository's mode stores content objects
// under: .filez in archive-z2, .file in every bare mode.
func (r *Repo) contentObjectType() ObjectType {
	if r.mode == ModeArchive {
		return ObjectFileZ
	}
	return ObjectFile
}

// maxSymlinkTarget is PATH_MAX less the terminating NUL: the longest target
// symlink(2) accepts, so the longest a checkout can recreate.
const maxSymlinkTarget = 4095

// ErrInvalidContent: a content object's metadata cannot be stored (a file
// type other than regular or symlink, stray mode bits, a bad symlink
// target or xattr name, metadata the repository mode cannot represent), or
// its content is not the size announced.
var ErrInvalidContent = errors.New("ostree: invalid content object")

// FileMeta is what OSTree records about a file or directory besides its
// content: ownership, st_mode (type and permission bits), the symlink
// target and extended attributes. It describes content objects (regular
// files and symlinks) and, with ModeDir and no target, dirmeta objects.
type FileMeta struct {
	UID, GID uint32
	Mode     uint32
	Symlink  string // target of a symlink; "" otherwise
	Xattrs   []Xattr
}

// CanonicalPermissions returns m as `ostree commit --canonical-permissions`
// records it, which is also what `ostree commit` does on its own in a
// bare-user-only repository: uid and gid 0, no extended attributes, and for
// anything but a symlink the permission bits masked with 0755 (so setuid,
// setgid, sticky and group/other write go).
func (m FileMeta) CanonicalPermissions() FileMeta {
	c := FileMeta{Mode: m.Mode, Symlink: m.Symlink}
	if m.Mode&ModeTypeMask != ModeSymlink {
		c.Mode &= ModeTypeMask | 0o755
	}
	return c
}

// validateContent checks that m describes a content object libostree can
// store: a regular file or a symlink with a usable target, no mode bits
// beyond the permissions, well-formed xattr names.
func (m FileMeta) validateContent() error {
	if m.Mode&^(ModeTypeMask|ModePermsMask) != 0 {
		return fmt.Errorf("%w: mode %#o has bits outside the file type and permissions", ErrInvalidContent, m.Mode)
	}
	switch m.Mode & ModeTypeMask {
	case ModeRegular:
		if m.Symlink != "" {
			return fmt.Errorf("%w: regular file with a symlink target", ErrInvalidContent)
		}
	case ModeSymlink:
		if m.Symlink == "" || len(m.Symlink) > maxSymlinkTarget || strings.IndexByte(m.Symlink, 0) >= 0 || !utf8.ValidString(m.Symlink) {
			return fmt.Errorf("%w: symlink target %.80q is empty, longer than %d bytes, has a NUL or is not UTF-8", ErrInvalidContent, m.Symlink, maxSymlinkTarget)
		}
	default:
		return fmt.Errorf("%w: mode %#o is neither a regular file nor a symlink", ErrInvalidContent, m.Mode)
	}
	// The dirmeta decoder's xattr checks (names non-empty, NUL-free,
	// unique) are what a content header needs too.
	if _, err := decodeXattrs(xattrsValue(m.Xattrs)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidContent, err)
	}
	return nil
}

// OSTree stores the numbers in its headers big-endian while GVariant
// serialises in host order (little-endian here); swapping before Marshal
// yields the big-endian bytes.
func be32(v uint32) uint32 { return bits.ReverseBytes32(v) }
func be64(v uint64) uint64 { return bits.ReverseBytes64(v) }

// fileHeader is the `(uuuusa(ayay))` header content checksums cover: uid,
// gid, mode, rdev (always 0), symlink target, xattrs.
func fileHeader(m FileMeta) ([]byte, error) {
	return gvariant.Marshal("(uuuusa(ayay))", []any{be32(m.UID), be32(m.GID), be32(m.Mode), uint32(0), m.Symlink, xattrsValue(m.Xattrs)})
}

// archiveHeader is the `(tuuuusa(ayay))` header of a .filez object: the
// uncompressed size, then the fields of fileHeader.
func archiveHeader(m FileMeta, size uint64) ([]byte, error) {
	return gvariant.Marshal("(tuuuusa(ayay))", []any{be64(size), be32(m.UID), be32(m.GID), be32(m.Mode), uint32(0), m.Symlink, xattrsValue(m.Xattrs)})
}

// bareUserMeta is the `(uuua(ayay))` value of the user.ostreemeta xattr
// that bare-user repositories keep on each content object.
func bareUserMeta(m FileMeta) ([]byte, error) {
	return gvariant.Marshal("(uuua(ayay))", []any{be32(m.UID), be32(m.GID), be32(m.Mode), xattrsValue(m.Xattrs)})
}

// framedHeader prefixes a header with its big-endian length and four zero
// bytes, the framing both the checksum input and .filez objects use.
func framedHeader(h []byte) []byte {
	b := make([]byte, 8, 8+len(h))
	binary.BigEndian.PutUint32(b, uint32(len(h)))
	return append(b, h...)
}

// newContentHash returns a sha256 that has consumed the framed header of a
// content object with metadata m; writing the file's bytes to it then
// yields the object's checksum.
func newContentHash(m FileMeta) (hash.Hash, error) {
	h, err := fileHeader(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidContent, err)
	}
	sum := sha256.New()
	sum.Write(framedHeader(h))
	return sum, nil
}
