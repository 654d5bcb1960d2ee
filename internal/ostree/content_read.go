package ostree

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache/internal/gvariant"
)

// maxContentHeaderSize caps the header of a .filez object and the
// user.ostreemeta xattr: an xattr list beyond this is no file's.
const maxContentHeaderSize = 1 << 20

// ContentObject is a content object opened for reading (Repo.OpenContent):
// its metadata, its size, and (for a regular file) its bytes. Reading to
// the end checks the object against its checksum: a mismatch is an error
// wrapping ErrCorrupt instead of io.EOF.
type ContentObject struct {
	Meta FileMeta
	Size int64 // the content's length; 0 for a symlink

	path     string
	checksum string
	f        *os.File
	r        io.Reader // the content, Size bytes; nil for a symlink
	sum      hash.Hash
	n        int64
	done     bool
}

// OpenContent opens the content object checksum in any mode but
// bare-split-xattrs (ErrUnsupportedMode). A missing object wraps
// ErrObjectNotFound; a malformed one ErrCorrupt. The caller must Close it.
func (r *Repo) OpenContent(checksum string) (*ContentObject, error) {
	t := r.contentObjectType()
	if err := checkObject(checksum, t); err != nil {
		return nil, err
	}
	if r.mode == ModeBareSplitXattrs {
		return nil, fmt.Errorf("ostree: read content: %w: %s", ErrUnsupportedMode, r.mode)
	}
	p := r.ObjectPath(checksum, t)
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, fmt.Errorf("%w: %s %s", ErrObjectNotFound, t, checksum)
		}
		return nil, fmt.Errorf("ostree: stat %s: %w", p, err)
	}
	c := &ContentObject{path: p, checksum: checksum}
	var err error
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// Only the modes storing symlinks as symlinks get here.
		err = c.openSymlink(r.mode, &st)
	} else {
		err = c.openFile(r.mode, &st)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	if c.r == nil {
		// A symlink: nothing to read, so check it now.
		c.done = true
		if err := c.verify(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// openSymlink reads a symlink stored as one (bare, bare-user-only).
func (c *ContentObject) openSymlink(mode Mode, st *unix.Stat_t) error {
	target, err := os.Readlink(c.path)
	if err != nil {
		return fmt.Errorf("ostree: read %s: %w", c.path, err)
	}
	c.Meta = FileMeta{Mode: ModeSymlink | 0o777, Symlink: target}
	if mode == ModeBare {
		c.Meta.UID, c.Meta.GID = st.Uid, st.Gid
		if c.Meta.Xattrs, err = readXattrs(c.path, unix.Llistxattr, unix.Lgetxattr); err != nil {
			return err
		}
	} else if mode != ModeBareUserOnly {
		return corrupt(c.path, errors.New("a symlink in a repository that stores none"))
	}
	return c.startHash()
}

// openFile opens a regular object file and reads its metadata as the
// repository mode stores it.
func (c *ContentObject) openFile(mode Mode, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return corrupt(c.path, fmt.Errorf("not a regular file (mode %#o)", st.Mode))
	}
	f, err := os.OpenFile(c.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("ostree: open %s: %w", c.path, err)
	}
	c.f = f
	switch mode {
	case ModeArchive:
		return c.openArchive()
	case ModeBareUser:
		v, err := growRead(func(b []byte) (int, error) { return unix.Fgetxattr(int(f.Fd()), bareUserMetaXattr, b) })
		if err != nil {
			return corrupt(c.path, fmt.Errorf("%s: %w", bareUserMetaXattr, err))
		}
		if c.Meta, err = decodeBareUserMeta(v); err != nil {
			return corrupt(c.path, err)
		}
		if c.Meta.Mode&ModeTypeMask == ModeSymlink {
			// The target, and a NUL, as the file's content.
			data, err := io.ReadAll(io.LimitReader(f, maxSymlinkTarget+2))
			if err != nil {
				return fmt.Errorf("ostree: read %s: %w", c.path, err)
			}
			c.Meta.Symlink = string(bytes.TrimSuffix(data, []byte{0}))
			return c.startHash()
		}
	case ModeBareUserOnly:
		c.Meta = FileMeta{Mode: st.Mode}
	case ModeBare:
		c.Meta = FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode}
		if c.Meta.Xattrs, err = readXattrs(c.path, unix.Llistxattr, unix.Lgetxattr); err != nil {
			return err
		}
	}
	if err := c.startHash(); err != nil {
		return err
	}
	c.Size, c.r = st.Size, bufio.NewReaderSize(f, copyBufferSize)
	return nil
}

// openArchive reads a .filez object's header and sets up inflating its
// content.
func (c *ContentObject) openArchive() error {
	br := bufio.NewReaderSize(c.f, copyBufferSize)
	var prefix [8]byte
	if _, err := io.ReadFull(br, prefix[:]); err != nil {
		return corrupt(c.path, fmt.Errorf("header: %w", err))
	}
	n := binary.BigEndian.Uint32(prefix[:4])
	if n > maxContentHeaderSize || binary.BigEndian.Uint32(prefix[4:]) != 0 {
		return corrupt(c.path, fmt.Errorf("header length %d or padding %x invalid", n, prefix[4:]))
	}
	h := make([]byte, n)
	if _, err := io.ReadFull(br, h); err != nil {
		return corrupt(c.path, fmt.Errorf("header: %w", err))
	}
	v, err := gvariant.Unmarshal("(tuuuusa(ayay))", h)
	if err != nil {
		return corrupt(c.path, err)
	}
	t := v.([]any)
	size := be64(t[0].(uint64))
	c.Meta = FileMeta{UID: be32(t[1].(uint32)), GID: be32(t[2].(uint32)), Mode: be32(t[3].(uint32)), Symlink: t[5].(string)}
	if c.Meta.Xattrs, err = decodeXattrs(t[6]); err != nil {
		return corrupt(c.path, err)
	}
	if err := c.startHash(); err != nil {
		return err
	}
	if c.Meta.Mode&ModeTypeMask == ModeSymlink {
		return nil
	}
	if size > 1<<62 {
		return corrupt(c.path, fmt.Errorf("size %d out of range", size))
	}
	c.Size, c.r = int64(size), flate.NewReader(br)
	return nil
}

// startHash validates the metadata and starts the checksum.
func (c *ContentObject) startHash() error {
	if err := c.Meta.validateContent(); err != nil {
		return corrupt(c.path, err)
	}
	sum, err := newContentHash(c.Meta)
	if err != nil {
		return corrupt(c.path, err)
	}
	c.sum = sum
	return nil
}

// Read reads the content. At its end it checks the checksum.
func (c *ContentObject) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	rest := c.Size - c.n
	if rest == 0 {
		c.done = true
		if err := c.verify(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	if int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.sum.Write(p[:n])
	c.n += int64(n)
	switch {
	case err == io.EOF && c.n < c.Size:
		return n, corrupt(c.path, fmt.Errorf("content ends after %d of %d bytes", c.n, c.Size))
	case err != nil && err != io.EOF:
		return n, corrupt(c.path, err)
	}
	return n, nil
}

// verify checks the checksum once all content is read.
func (c *ContentObject) verify() error {
	if got := hex.EncodeToString(c.sum.Sum(nil)); got != c.checksum {
		return corrupt(c.path, fmt.Errorf("content has checksum %s", got))
	}
	return nil
}

// Close releases the object's file.
func (c *ContentObject) Close() error {
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}

// decodeBareUserMeta parses a user.ostreemeta value (uuua(ayay)).
func decodeBareUserMeta(v []byte) (FileMeta, error) {
	d, err := gvariant.Unmarshal("(uuua(ayay))", v)
	if err != nil {
		return FileMeta{}, err
	}
	t := d.([]any)
	m := FileMeta{UID: be32(t[0].(uint32)), GID: be32(t[1].(uint32)), Mode: be32(t[2].(uint32))}
	m.Xattrs, err = decodeXattrs(t[3])
	return m, err
}

// readXattrs reads the xattrs of path, sorted by name, leaving out those
// with an empty value as libostree does in bare repositories.
func readXattrs(path string, list func(string, []byte) (int, error), get func(string, string, []byte) (int, error)) ([]Xattr, error) {
	names, err := growRead(func(b []byte) (int, error) { return list(path, b) })
	if err != nil {
		return nil, fmt.Errorf("ostree: list xattrs of %s: %w", path, err)
	}
	var xattrs []Xattr
	for name := range strings.SplitSeq(string(names), "\x00") {
		if name == "" {
			continue
		}
		v, err := growRead(func(b []byte) (int, error) { return get(path, name, b) })
		if err != nil {
			return nil, fmt.Errorf("ostree: read xattr %s of %s: %w", name, path, err)
		}
		if len(v) > 0 {
			xattrs = append(xattrs, Xattr{Name: name, Value: v})
		}
	}
	SortXattrs(xattrs)
	return xattrs, nil
}

// growRead calls read with a buffer grown until the result fits, up to
// maxContentHeaderSize.
func growRead(read func([]byte) (int, error)) ([]byte, error) {
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := read(buf)
		if errors.Is(err, unix.ERANGE) && size < maxContentHeaderSize {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
