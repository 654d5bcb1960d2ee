package ostree

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ObjectType is an object's kind, which is also its file name extension.
type ObjectType string

// The object types of libostree's loose object store.
const (
	ObjectCommit          ObjectType = "commit"
	ObjectDirTree         ObjectType = "dirtree"
	ObjectDirMeta         ObjectType = "dirmeta"
	ObjectCommitMeta      ObjectType = "commitmeta"
	ObjectFile            ObjectType = "file"
	ObjectFileZ           ObjectType = "filez"
	ObjectTombstoneCommit ObjectType = "tombstone-commit"
)

func (t ObjectType) valid() bool {
	switch t {
	case ObjectCommit, ObjectDirTree, ObjectDirMeta, ObjectCommitMeta, ObjectFile, ObjectFileZ, ObjectTombstoneCommit:
		return true
	}
	return false
}

// ValidChecksum reports whether s is an object checksum: 64 lower-case hex
// digits.
func ValidChecksum(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// checkObject validates a checksum and object type.
func checkObject(checksum string, t ObjectType) error {
	if !ValidChecksum(checksum) {
		return fmt.Errorf("%w: %q", ErrInvalidChecksum, checksum)
	}
	if !t.valid() {
		return fmt.Errorf("%w: %q", ErrInvalidObjectType, t)
	}
	return nil
}

// ObjectPath returns objects/XX/<62 hex>.<type> under the repository, or ""
// when checksum or t is invalid.
func (r *Repo) ObjectPath(checksum string, t ObjectType) string {
	if checkObject(checksum, t) != nil {
		return ""
	}
	return filepath.Join(r.path, "objects", checksum[:2], checksum[2:]+"."+string(t))
}

// HasObject reports whether the object exists.
func (r *Repo) HasObject(checksum string, t ObjectType) (bool, error) {
	if err := checkObject(checksum, t); err != nil {
		return false, err
	}
	p := r.ObjectPath(checksum, t)
	_, err := os.Lstat(p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return false, nil
	}
	return false, readError("stat", p, err)
}

// isMetadataType reports whether t is a content-addressed metadata object
// type WriteMetadataObject and ReadMetadataObject handle.
func isMetadataType(t ObjectType) bool {
	return t == ObjectCommit || t == ObjectDirTree || t == ObjectDirMeta
}

// WriteMetadataObject stores a commit, dirtree or dirmeta object given its
// serialized bytes and returns its checksum, sha256(data). The bytes must
// decode as that type and be in normal form (else ErrCorrupt), since
// libostree and ostree-ext read these objects back trusting their shape. An
// existing object is not rewritten. The write takes the shared repository
// lock and is atomic (temp file in objects/XX, fsync, rename, fsync).
func (r *Repo) WriteMetadataObject(ctx context.Context, t ObjectType, data []byte) (string, error) {
	if !isMetadataType(t) {
		return "", fmt.Errorf("write metadata object: %w: %q", ErrInvalidObjectType, t)
	}
	if len(data) > maxMetadataObjectSize {
		return "", fmt.Errorf("write %s object: %w: %d bytes", t, ErrTooLarge, len(data))
	}
	if err := validateMetadataObject(t, data); err != nil {
		return "", fmt.Errorf("write %s object: %w", t, err)
	}
	sum := sha256.Sum256(data)
	checksum := hex.EncodeToString(sum[:])
	// Checked under the lock, so a prune running now cannot remove the
	// object between the check and our return. A caller that goes on to
	// reference it (a dirtree, a commit, a ref) holds LockShared itself
	// across the whole sequence, as a libostree transaction does.
	unlock, err := r.Lock(ctx, LockShared)
	if err != nil {
		return "", fmt.Errorf("write %s object: %w", t, err)
	}
	defer unlock()
	if ok, err := r.HasObject(checksum, t); err != nil {
		return "", err
	} else if ok {
		return checksum, nil
	}
	p := r.ObjectPath(checksum, t)
	dir, name := filepath.Split(p)
	if err := mkdirAll(dir); err != nil {
		return "", err
	}
	if err := writeFileAtomic(r.tmpDir(), dir, name, data, 0o644); err != nil {
		return "", err
	}
	return checksum, nil
}

// ReadMetadataObject returns a commit, dirtree or dirmeta object's bytes,
// verified against its checksum (ErrCorrupt on mismatch) and capped in
// size. A missing object wraps ErrObjectNotFound.
func (r *Repo) ReadMetadataObject(checksum string, t ObjectType) ([]byte, error) {
	if err := checkObject(checksum, t); err != nil {
		return nil, err
	}
	if !isMetadataType(t) {
		return nil, fmt.Errorf("read metadata object: %w: %q", ErrInvalidObjectType, t)
	}
	p := r.ObjectPath(checksum, t)
	data, err := readFileCapped(p, maxMetadataObjectSize, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("%w: %s %s", ErrObjectNotFound, t, checksum)
	}
	if err != nil {
		return nil, readError("read", p, err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != checksum {
		return nil, corrupt(p, fmt.Errorf("content has checksum %x", sum))
	}
	return data, nil
}

// validateMetadataObject checks data is a well-formed object of type t.
// The decoders are strict (gvariant normal form, sorted names, 32-byte
// checksums, no related objects), so what they accept is exactly what the
// encoders produce: decoding is the whole check.
func validateMetadataObject(t ObjectType, data []byte) error {
	var err error
	switch t {
	case ObjectCommit:
		_, err = DecodeCommit(data)
	case ObjectDirTree:
		_, _, err = DecodeDirTree(data)
	case ObjectDirMeta:
		_, _, _, _, err = DecodeDirMeta(data)
	}
	return err
}
