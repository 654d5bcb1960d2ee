package ostree

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
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
// wrapping ErrCorrupt instead of io.EOF. Opening reads the metadata only,
// so an object opened to look at its metadata and closed costs little.
type ContentObject struct {
	Meta FileMeta
	Size int64 // the content's length; 0 for a symlink

	path     string
	checksum string
	mode     Mode     // of the repository it is in
	f        *os.File // nil for a symlink stored as one
	offset   int64    // where the content (archive: the compressed stream) starts in f
	stored   int64    // its length in f
	r        io.Reader
	sum      hash.Hash
	n        int64
	done     bool
	err      error // the result of the check at the end
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
	c := &ContentObject{path: p, checksum: checksum, mode: r.mode}
	var err error
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// Only the modes storing symlinks as symlinks get here.
		err = c.openSymlink(&st)
	} else {
		err = c.openFile(&st)
	}
	if err == nil {
		err = c.Meta.validateContent()
	}
	if err == nil && c.Meta.Mode&ModeTypeMask == ModeSymlink {
		// Nothing to read, so check it now.
		err = c.finish()
	}
	if err != nil {
		c.Close()
		if !errors.Is(err, ErrCorrupt) && errors.Is(err, ErrInvalidContent) {
			err = corrupt(c.path, err)
		}
		return nil, err
	}
	return c, nil
}

// openSymlink reads a symlink stored as one (bare, bare-user-only).
func (c *ContentObject) openSymlink(st *unix.Stat_t) error {
	target, err := os.Readlink(c.path)
	if err != nil {
		return fmt.Errorf("ostree: read %s: %w", c.path, err)
	}
	c.Meta = FileMeta{Mode: ModeSymlink | 0o777, Symlink: target}
	if c.mode == ModeBare {
		c.Meta.UID, c.Meta.GID = st.Uid, st.Gid
		if c.Meta.Xattrs, err = readXattrs(c.path, unix.Llistxattr, unix.Lgetxattr); err != nil {
			return err
		}
	} else if c.mode != ModeBareUserOnly {
		return corrupt(c.path, errors.New("a symlink in a repository that stores none"))
	}
	return nil
}

// openFile opens a regular object file and reads its metadata as the
// repository mode stores it.
func (c *ContentObject) openFile(st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return corrupt(c.path, fmt.Errorf("not a regular file (mode %#o)", st.Mode))
	}
	f, err := os.OpenFile(c.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("ostree: open %s: %w", c.path, err)
	}
	c.f = f
	switch c.mode {
	case ModeArchive:
		return c.openArchive(st.Size)
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
			return nil
		}
	case ModeBareUserOnly:
		c.Meta = FileMeta{Mode: st.Mode}
	case ModeBare:
		c.Meta = FileMeta{UID: st.Uid, GID: st.Gid, Mode: st.Mode}
		if c.Meta.Xattrs, err = readXattrs(c.path, unix.Llistxattr, unix.Lgetxattr); err != nil {
			return err
		}
	}
	c.Size, c.stored = st.Size, st.Size
	return nil
}

// archiveHeaderRead is how much of a .filez object is read at first: the
// header of nearly every object fits.
const archiveHeaderRead = 4096

// openArchive reads a .filez object's header; fileSize is the object
// file's size.
func (c *ContentObject) openArchive(fileSize int64) error {
	buf := make([]byte, min(fileSize, archiveHeaderRead))
	if _, err := io.ReadFull(c.f, buf); err != nil || len(buf) < 8 {
		return corrupt(c.path, fmt.Errorf("header: %w", cmp.Or(err, io.ErrUnexpectedEOF)))
	}
	n := binary.BigEndian.Uint32(buf[:4])
	if n > maxContentHeaderSize || binary.BigEndian.Uint32(buf[4:8]) != 0 || int64(n) > fileSize-8 {
		return corrupt(c.path, fmt.Errorf("header length %d or padding %x invalid", n, buf[4:8]))
	}
	if len(buf) < 8+int(n) {
		more := make([]byte, 8+int(n)-len(buf))
		if _, err := io.ReadFull(c.f, more); err != nil {
			return corrupt(c.path, fmt.Errorf("header: %w", err))
		}
		buf = append(buf, more...)
	}
	v, err := gvariant.Unmarshal("(tuuuusa(ayay))", buf[8:8+n])
	if err != nil {
		return corrupt(c.path, err)
	}
	t := v.([]any)
	size := be64(t[0].(uint64))
	c.Meta = FileMeta{UID: be32(t[1].(uint32)), GID: be32(t[2].(uint32)), Mode: be32(t[3].(uint32)), Symlink: t[5].(string)}
	if c.Meta.Xattrs, err = decodeXattrs(t[6]); err != nil {
		return corrupt(c.path, err)
	}
	if c.Meta.Mode&ModeTypeMask == ModeSymlink {
		return nil
	}
	if size > 1<<62 {
		return corrupt(c.path, fmt.Errorf("size %d out of range", size))
	}
	c.Size, c.offset = int64(size), 8+int64(n)
	c.stored = fileSize - c.offset
	return nil
}

// startHash starts the checksum with the object's header.
func (c *ContentObject) startHash() error {
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
		return 0, cmp.Or(c.err, io.EOF)
	}
	if c.sum == nil {
		if err := c.startReading(); err != nil {
			return 0, err
		}
	}
	rest := c.Size - c.n
	if rest == 0 {
		if err := c.finish(); err != nil {
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

// startReading starts the checksum and sets up reading the content.
func (c *ContentObject) startReading() error {
	if err := c.startHash(); err != nil {
		return err
	}
	content := io.NewSectionReader(c.f, c.offset, math.MaxInt64-c.offset)
	if c.mode != ModeArchive {
		c.r = content // read in the caller's chunks
		return nil
	}
	// The inflater reads byte by byte: buffer what is stored, up to
	// copyBufferSize (most objects are small).
	c.r = flate.NewReader(bufio.NewReaderSize(content, int(max(min(c.stored, copyBufferSize), 16))))
	return nil
}

// finish checks the checksum once all content is read, once.
func (c *ContentObject) finish() error {
	if c.done {
		return c.err
	}
	c.done = true
	if c.sum == nil {
		c.err = c.startHash()
	}
	if c.err == nil {
		if got := hex.EncodeToString(c.sum.Sum(nil)); got != c.checksum {
			c.err = corrupt(c.path, fmt.Errorf("content has checksum %s", got))
		}
	}
	return c.err
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
