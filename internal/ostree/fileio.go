package ostree

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Size caps for files read from a repository. libostree caps metadata
// objects at OSTREE_MAX_METADATA_SIZE (128 MiB); ours are tighter where the
// content allows, so a hostile repository cannot make a reader allocate
// much.
const (
	maxMetadataObjectSize   = 128 << 20
	maxDetachedMetadataSize = 64 << 20
	maxConfigSize           = 1 << 20
	maxRefFileSize          = 256
)

// readFileCapped reads a regular file of at most limit bytes, opened with
// O_RDONLY|flag. A larger or non-regular file is reported as corrupt
// (wrapping ErrTooLarge for size); a missing file returns an error matching
// fs.ErrNotExist.
func readFileCapped(path string, limit int64, flag int) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO planted in the repository must not hang.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|flag, 0)
	if err != nil {
		return nil, readError("open", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, readError("stat", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, corrupt(path, fmt.Errorf("not a regular file (%s)", st.Mode().Type()))
	}
	if st.Size() > limit {
		return nil, corrupt(path, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, st.Size(), limit))
	}
	// Sized from fstat (already capped); reading through a limit of one byte
	// more notices a file that grew since.
	buf := bytes.NewBuffer(make([]byte, 0, st.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, readError("read", path, err)
	}
	if int64(buf.Len()) > limit {
		return nil, corrupt(path, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit))
	}
	return buf.Bytes(), nil
}

// writeFileAtomic replaces dir/name with data: a temporary file in tmpDir
// (the repository's tmp/, on the same filesystem) is written, given perm,
// fsynced, renamed over the target, and dir is fsynced so the rename
// survives a crash. On failure nothing is left behind and the previous file
// is intact. A process killed mid-write leaves its temporary file in tmp/,
// where libostree expires stale entries, never among the objects or refs.
// Permission and read-only errors wrap ErrReadOnly.
func writeFileAtomic(tmpDir, dir, name string, data []byte, perm os.FileMode) error {
	target := filepath.Join(dir, name)
	// The name is left out so a long ref name cannot push it past NAME_MAX.
	tmp, err := os.CreateTemp(tmpDir, ".tmp-")
	if err != nil {
		return writeError("create temporary file for", target, err)
	}
	tmpName := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return writeError("write", tmpName, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return writeError("chmod", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		return writeError("fsync", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return writeError("close", tmpName, err)
	}
	if err := os.Rename(tmpName, target); err != nil {
		return writeError("rename into place", target, err)
	}
	ok = true
	return syncDir(dir)
}

// syncDir fsyncs a directory, making renames and unlinks in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return writeError("open directory", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return writeError("fsync directory", dir, err)
	}
	return nil
}

// mkdirAll is os.MkdirAll with write-error classification.
func mkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return writeError("create directory", dir, err)
	}
	return nil
}
