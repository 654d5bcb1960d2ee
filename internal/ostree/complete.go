package ostree

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"syscall"
)

// objectStore is where a completeness walk looks objects up: a repository,
// or a Stage (its staged objects, then its repository).
type objectStore interface {
	HasObject(checksum string, t ObjectType) (bool, error)
	ReadMetadataObject(checksum string, t ObjectType) ([]byte, error)
	contentType() ObjectType
}

func (r *Repo) contentType() ObjectType  { return r.contentObjectType() }
func (s *Stage) contentType() ObjectType { return s.repo.contentObjectType() }

// CheckCommitComplete checks that the commit and every object it reaches
// (dirtree, dirmeta and content objects) are in the repository, as
// `ostree fsck` would find them, without reading content. A missing
// object is an error wrapping ErrObjectNotFound that names it and its
// path in the tree; a malformed metadata object one wrapping ErrCorrupt.
func (r *Repo) CheckCommitComplete(ctx context.Context, checksum string) error {
	c, err := r.ReadCommit(checksum)
	if err != nil {
		return err
	}
	return checkTree(ctx, r, c.RootTree, c.RootMeta)
}

// CheckTreeComplete is CheckCommitComplete for a root dirtree and dirmeta,
// finding objects staged here as well as in the repository: a caller can
// check what it staged before Commit moves anything into objects/.
func (s *Stage) CheckTreeComplete(ctx context.Context, rootTree, rootMeta string) error {
	return checkTree(ctx, s, rootTree, rootMeta)
}

// MarkCommitComplete removes the commit's state/<checksum>.commitpartial,
// the mark libostree leaves on a commit whose objects a pull has not all
// fetched yet (as ostree_repo_mark_commit_partial(FALSE) does). Call it
// once the commit is known to be complete.
func (r *Repo) MarkCommitComplete(checksum string) error {
	if !ValidChecksum(checksum) {
		return fmt.Errorf("%w: %q", ErrInvalidChecksum, checksum)
	}
	p := r.commitPartialPath(checksum)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return writeError("remove", p, err)
	}
	return nil
}

// HasObject reports whether an object is staged here or in the repository.
func (s *Stage) HasObject(checksum string, t ObjectType) (bool, error) {
	if err := checkObject(checksum, t); err != nil {
		return false, err
	}
	k := objectKey{t: t}
	hex.Decode(k.sum[:], []byte(checksum))
	return s.present(k)
}

// ReadMetadataObject returns a dirtree or dirmeta object staged here or in
// the repository, verified as Repo.ReadMetadataObject verifies it.
func (s *Stage) ReadMetadataObject(checksum string, t ObjectType) ([]byte, error) {
	if err := checkObject(checksum, t); err != nil {
		return nil, err
	}
	k := objectKey{t: t}
	hex.Decode(k.sum[:], []byte(checksum))
	p := s.stagedPath(k)
	data, err := readFileCapped(p, maxMetadataObjectSize, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return s.repo.ReadMetadataObject(checksum, t)
	}
	if err != nil {
		return nil, fmt.Errorf("ostree: read %s: %w", p, err)
	}
	if sum := sha256.Sum256(data); sum != k.sum {
		return nil, corrupt(p, fmt.Errorf("content has checksum %x", sum))
	}
	return data, nil
}

// WriteMetadata stages a dirtree or dirmeta object given its serialized
// bytes and returns its checksum. The bytes must decode as that type in
// normal form (else ErrCorrupt), as for Repo.WriteMetadataObject.
func (s *Stage) WriteMetadata(ctx context.Context, t ObjectType, data []byte) (string, error) {
	if t != ObjectDirTree && t != ObjectDirMeta {
		return "", fmt.Errorf("ostree: stage metadata: %w: %q", ErrInvalidObjectType, t)
	}
	if len(data) > maxMetadataObjectSize {
		return "", fmt.Errorf("ostree: stage %s object: %w: %d bytes", t, ErrTooLarge, len(data))
	}
	if err := validateMetadataObject(t, data); err != nil {
		return "", fmt.Errorf("ostree: stage %s object: %w", t, err)
	}
	return s.writeMetadata(ctx, t, data)
}

// checkTree walks a tree depth first, each dirtree once.
func checkTree(ctx context.Context, store objectStore, rootTree, rootMeta string) error {
	w := &completeWalk{ctx: ctx, store: store, content: store.contentType(), seen: map[objectKey]bool{}}
	return w.dir("/", rootTree, rootMeta, 0)
}

type completeWalk struct {
	ctx     context.Context
	store   objectStore
	content ObjectType
	seen    map[objectKey]bool // objects already checked
}

func (w *completeWalk) require(at, checksum string, t ObjectType) error {
	ok, err := w.store.HasObject(checksum, t)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s %s at %s", ErrObjectNotFound, t, checksum, at)
	}
	return nil
}

// once reports whether the object is met for the first time.
func (w *completeWalk) once(checksum string, t ObjectType) bool {
	k := objectKey{t: t}
	hex.Decode(k.sum[:], []byte(checksum))
	if w.seen[k] {
		return false
	}
	w.seen[k] = true
	return true
}

func (w *completeWalk) dir(at, tree, meta string, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("%w: tree deeper than %d levels at %s", ErrCorrupt, maxTreeDepth, at)
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if w.once(meta, ObjectDirMeta) {
		if err := w.require(at, meta, ObjectDirMeta); err != nil {
			return err
		}
	}
	if !w.once(tree, ObjectDirTree) {
		return nil
	}
	data, err := w.store.ReadMetadataObject(tree, ObjectDirTree)
	if errors.Is(err, ErrObjectNotFound) {
		return fmt.Errorf("%w at %s", err, at)
	}
	if err != nil {
		return err
	}
	files, dirs, err := DecodeDirTree(data)
	if err != nil {
		return fmt.Errorf("dirtree %s at %s: %w", tree, at, err)
	}
	for _, f := range files {
		if !w.once(f.Checksum, w.content) {
			continue
		}
		if err := w.require(path.Join(at, f.Name), f.Checksum, w.content); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := w.dir(path.Join(at, d.Name), d.TreeChecksum, d.MetaChecksum, depth+1); err != nil {
			return err
		}
	}
	return nil
}
