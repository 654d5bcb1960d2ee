package importer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/osimage/updatecache/internal/ostree"
)

// objectSetDirMeta is the root directory of an object-set commit:
// ostree-ext's default dirmeta, root-owned 0755 without xattrs.
var objectSetDirMeta = ostree.FileMeta{Mode: ostree.ModeDir | 0o755}

// objectSetCommit is the commit ostree-ext's finish_import_object_set
// writes (libostree's write_commit_with_time with no parent, subject,
// body or metadata, at time 0) for a root of one file per content object,
// named by its checksum.
func objectSetCommit(tree, meta string) *ostree.Commit {
	return &ostree.Commit{Timestamp: time.Unix(0, 0).UTC(), RootTree: tree, RootMeta: meta}
}

// IsObjectSetCommit reports whether commit has the shape of what
// ostree-ext and ImportObjectSetLayer record for a chunk layer: no
// parent, subject, body or metadata, timestamp 0, a root-owned 0755 root
// directory holding no directories and only files named by the checksum
// of the content object they are. No filesystem has that shape, so a
// caller can tell such a commit from a layer commit of a plain layer and
// refuse to merge it as one.
func IsObjectSetCommit(repo *ostree.Repo, commit string) (bool, error) {
	c, err := repo.ReadCommit(commit)
	if err != nil {
		return false, err
	}
	want := objectSetCommit(c.RootTree, c.RootMeta)
	if len(c.Metadata) > 0 || c.Parent != want.Parent || c.Subject != want.Subject || c.Body != want.Body || !c.Timestamp.Equal(want.Timestamp) {
		return false, nil
	}
	data, err := repo.ReadMetadataObject(c.RootMeta, ostree.ObjectDirMeta)
	if err != nil {
		return false, err
	}
	uid, gid, mode, xattrs, err := ostree.DecodeDirMeta(data)
	if err != nil {
		return false, err
	}
	if uid != objectSetDirMeta.UID || gid != objectSetDirMeta.GID || mode != objectSetDirMeta.Mode || len(xattrs) > 0 {
		return false, nil
	}
	data, err = repo.ReadMetadataObject(c.RootTree, ostree.ObjectDirTree)
	if err != nil {
		return false, err
	}
	files, dirs, err := ostree.DecodeDirTree(data)
	if err != nil {
		return false, err
	}
	if len(dirs) > 0 {
		return false, nil
	}
	for _, f := range files {
		if f.Name != f.Checksum {
			return false, nil
		}
	}
	return true, nil
}

// LayerKind is what a layer of an image is, by ostree-ext's layout (its
// ostree.final-diffid label): the commit layer, a chunk layer, or a plain
// ("derived") layer.
type LayerKind int

const (
	// DerivedLayer is a plain layer (ImportLayer), including every layer
	// of an image that is not encapsulated.
	DerivedLayer LayerKind = iota
	// CommitLayer is an encapsulated image's first layer (ImportCommitLayer).
	CommitLayer
	// ObjectSetLayer is a chunk layer (ImportObjectSetLayer).
	ObjectSetLayer
)

func (k LayerKind) String() string {
	switch k {
	case DerivedLayer:
		return "derived layer"
	case CommitLayer:
		return "commit layer"
	case ObjectSetLayer:
		return "chunk layer"
	}
	return fmt.Sprintf("LayerKind(%d)", int(k))
}

// VerifyLayerCommit checks that commit (what a layer's blob ref names,
// written by this package or by ostree-ext) is what importing a layer of
// that kind makes, before it is reused instead of importing the layer
// again, as ostree-ext trusts blob refs. The commit must be complete
// (ErrIncompleteCommit), and, by kind:
//   - CommitLayer: the commit itself, image (the ostree.commit label)
//     (else ErrCommitMismatch);
//   - ObjectSetLayer: an object-set commit (else ErrLayerCommitKind);
//   - DerivedLayer: not an object-set commit (else ErrLayerCommitKind).
//
// image is used for CommitLayer only.
func VerifyLayerCommit(ctx context.Context, repo *ostree.Repo, commit string, kind LayerKind, image string) error {
	switch kind {
	case CommitLayer:
		if commit != image {
			return fmt.Errorf("%w: the layer's commit is %s, the image names %s", ErrCommitMismatch, commit, image)
		}
	case ObjectSetLayer, DerivedLayer:
		isSet, err := IsObjectSetCommit(repo, commit)
		if err != nil {
			return err
		}
		if isSet != (kind == ObjectSetLayer) {
			return fmt.Errorf("%w: commit %s for a %s", ErrLayerCommitKind, commit, kind)
		}
	default:
		return fmt.Errorf("%w: layer kind %d", ErrInvalidOptions, int(kind))
	}
	if err := repo.CheckCommitComplete(ctx, commit); err != nil {
		if errors.Is(err, ostree.ErrObjectNotFound) {
			return fmt.Errorf("%w: commit %s: %w", ErrIncompleteCommit, commit, err)
		}
		return err
	}
	return nil
}
