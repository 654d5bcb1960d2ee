package ostree

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/flate"
	"golang.org/x/sys/unix"
)

// CopyContent stages a content object with obj's content and the
// metadata meta, which must have obj's file type and, for a symlink, its
// target, and returns its checksum: the way to give an object new owners,
// permissions or xattrs (an SELinux label). obj is read to its end, so its
// own checksum is checked too (a mismatch wraps ErrCorrupt, and nothing is
// staged); it must not have been read before. In an archive repository
// the compressed content of an archive object is copied as it is rather
// than compressed again (any raw deflate stream decodes to the same
// content, which is all the checksum covers). Otherwise it is
// WriteContent of obj.
func (s *Stage) CopyContent(ctx context.Context, obj *ContentObject, meta FileMeta) (string, error) {
	if obj.n > 0 || obj.r != nil {
		return "", fmt.Errorf("%w: content object %s already read", ErrInvalidContent, obj.checksum)
	}
	typ := obj.Meta.Mode & ModeTypeMask
	if meta.Mode&ModeTypeMask != typ || meta.Symlink != obj.Meta.Symlink {
		return "", fmt.Errorf("%w: copy of %s as mode %#o target %q: not its type or target", ErrInvalidContent, obj.checksum, meta.Mode, meta.Symlink)
	}
	if s.repo.mode != ModeArchive || obj.mode != ModeArchive || typ != ModeRegular || obj.Size == 0 {
		return s.WriteContent(ctx, meta, obj.Size, obj)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := meta.validateContent(); err != nil {
		return "", err
	}
	h, err := archiveHeader(meta, uint64(obj.Size))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidContent, err)
	}
	newSum, err := newContentHash(meta)
	if err != nil {
		return "", err
	}
	if err := obj.startHash(); err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(obj.f.Fd()), &st); err != nil {
		return "", fmt.Errorf("ostree: stat %s: %w", obj.path, err)
	}
	key := objectKey{t: ObjectFileZ}
	var staged bool
	if stream := st.Size - obj.offset; stream <= smallContentSize {
		staged, err = s.copySmallArchive(key, obj, framedHeader(h), newSum, stream)
	} else {
		staged, err = s.copyLargeArchive(key, obj, framedHeader(h), newSum)
	}
	if err != nil {
		return "", err
	}
	if staged {
		s.stats.ContentWritten++
		s.stats.ContentBytes += obj.Size
	} else {
		s.stats.ContentPresent++
	}
	newSum.Sum(key.sum[:0])
	return key.checksum(), nil
}

// copySmallArchive reads the compressed stream into memory and inflates it
// from there, so an object already present costs no file.
func (s *Stage) copySmallArchive(key objectKey, obj *ContentObject, header []byte, newSum hash.Hash, stream int64) (bool, error) {
	if s.small == nil {
		s.small = bytes.NewBuffer(make([]byte, 0, smallContentSize))
	}
	s.small.Reset()
	if _, err := s.small.ReadFrom(io.NewSectionReader(obj.f, obj.offset, stream)); err != nil {
		return false, corrupt(obj.path, err)
	}
	compressed := bytes.NewReader(s.small.Bytes())
	if err := s.inflateInto(obj, compressed, newSum); err != nil {
		return false, err
	}
	newSum.Sum(key.sum[:0])
	if present, err := s.present(key); err != nil || present {
		return false, err
	}
	if err := s.makeSubdir(key); err != nil {
		return false, err
	}
	// Only the stream itself: what lies after it is no object's.
	consumed := s.small.Bytes()[:compressed.Size()-int64(compressed.Len())]
	tmp := s.tempName()
	f, err := createRaw(tmp)
	if err != nil {
		return false, err
	}
	if _, err = f.Write(header); err == nil {
		_, err = f.Write(consumed)
	}
	if err == nil {
		err = s.finishFile(f, 0o644, false)
	}
	f.close()
	if err == nil {
		err = s.stage(tmp, key)
	}
	if err != nil {
		unix.Unlink(tmp)
		return false, err
	}
	s.added(key)
	return true, nil
}

// copyLargeArchive copies the compressed stream into a temporary file as
// it inflates it, then stages the file or drops it when the object is
// already present.
func (s *Stage) copyLargeArchive(key objectKey, obj *ContentObject, header []byte, newSum hash.Hash) (bool, error) {
	tmp := s.tempName()
	f, err := createRaw(tmp)
	if err != nil {
		return false, err
	}
	err = s.copyArchiveStream(f, obj, header, newSum)
	if err == nil {
		err = s.finishFile(f, 0o644, false)
	}
	f.close()
	if err != nil {
		unix.Unlink(tmp)
		return false, err
	}
	newSum.Sum(key.sum[:0])
	return s.place(tmp, key)
}

// copyArchiveStream writes the header and obj's compressed stream to f,
// inflating the stream as it goes.
func (s *Stage) copyArchiveStream(f *rawFile, obj *ContentObject, header []byte, newSum hash.Hash) error {
	if _, err := f.Write(header); err != nil {
		return err
	}
	copied := &countingWriter{w: f}
	br := bufio.NewReaderSize(io.TeeReader(io.NewSectionReader(obj.f, obj.offset, 1<<62), copied), copyBufferSize)
	if err := s.inflateInto(obj, br, newSum); err != nil {
		if copied.err != nil {
			return copied.err
		}
		return err
	}
	// The tee copied what the buffer read ahead too: cut the file after
	// the stream.
	if extra := br.Buffered(); extra > 0 {
		if err := unix.Ftruncate(f.fd, int64(len(header))+copied.n-int64(extra)); err != nil {
			return writeError("truncate", f.name, err)
		}
	}
	return nil
}

// inflateInto inflates obj's compressed stream from r into obj's checksum
// and newSum, checks that it holds exactly obj.Size bytes, and checks
// obj's checksum.
func (s *Stage) inflateInto(obj *ContentObject, r flate.Reader, newSum hash.Hash) error {
	if s.zr == nil {
		s.zr = flate.NewReader(r)
	} else if err := s.zr.(flate.Resetter).Reset(r, nil); err != nil {
		return corrupt(obj.path, err)
	}
	if s.buf == nil {
		s.buf = make([]byte, copyBufferSize)
	}
	n, err := io.CopyBuffer(io.MultiWriter(obj.sum, newSum), io.LimitReader(s.zr, obj.Size+1), s.buf)
	obj.n = n
	if err != nil {
		return corrupt(obj.path, err)
	}
	if n != obj.Size {
		return corrupt(obj.path, fmt.Errorf("content has %d bytes or more, its header says %d", n, obj.Size))
	}
	return obj.finish()
}

// countingWriter counts what it passes on and keeps the first error.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}
