package updatecachetest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
)

// Repository modes for NewRepo and CreateRepo.
const (
	ModeArchive  = string(ostree.ModeArchive)
	ModeBareUser = string(ostree.ModeBareUser)
	ModeBare     = string(ostree.ModeBare) // needs root: files keep their owners and xattrs
)

// CreateRepo creates an empty OSTree repository at path, as `ostree init
// --mode=MODE` does.
func CreateRepo(path, mode string) error {
	_, err := ostree.Create(path, ostree.Mode(mode))
	return err
}

// NewRepo creates an empty archive-mode OSTree repository in a temporary
// directory that the test removes, and returns its path.
func NewRepo(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "repo")
	if err := CreateRepo(path, ModeArchive); err != nil {
		t.Fatal(err)
	}
	return path
}

// Deploy records img as the deployed image for imageRef in the repository at
// repoPath: a merge commit at ostree/container/image/<escaped imageRef> with
// the metadata keys ostree-ext writes (the manifest digest, the manifest and
// the config). The layers are not imported: the commit's tree is empty. That
// is all an update check reads, so it stands in for a real deployment in
// tests of Prepare and the queries. top, when not empty, is recorded as the
// digest the tag pointed to (an index digest), as this library's pull does.
// Deploy returns the merge commit's checksum.
func Deploy(ctx context.Context, repoPath, imageRef string, img *Image, top digest.Digest) (string, error) {
	repo, err := ostree.Open(repoPath)
	if err != nil {
		return "", err
	}
	ref, err := ostree.ImageRefName(imageRef)
	if err != nil {
		return "", err
	}
	// Hold the lock shared from the first object to the ref, as a libostree
	// transaction does, so a prune cannot take the objects in between.
	unlock, err := repo.Lock(ctx, ostree.LockShared)
	if err != nil {
		return "", err
	}
	defer unlock()
	tree, err := ostree.EncodeDirTree(nil, nil)
	if err != nil {
		return "", err
	}
	meta, err := ostree.EncodeDirMeta(0, 0, 0o40755, nil)
	if err != nil {
		return "", err
	}
	c := &ostree.Commit{Timestamp: time.Unix(0, 0).UTC()}
	if c.RootTree, err = repo.WriteMetadataObject(ctx, ostree.ObjectDirTree, tree); err != nil {
		return "", err
	}
	if c.RootMeta, err = repo.WriteMetadataObject(ctx, ostree.ObjectDirMeta, meta); err != nil {
		return "", err
	}
	c.Metadata.Set(keys.ManifestDigest, gvariant.NewString(img.ManifestDigest.String()))
	c.Metadata.Set(keys.Manifest, gvariant.NewString(string(img.Manifest)))
	c.Metadata.Set(keys.ImageConfig, gvariant.NewString(string(img.Config.Data)))
	if top != "" {
		c.Metadata.Set(keys.TopDigest, gvariant.NewString(top.String()))
	}
	commit, err := repo.WriteCommit(ctx, c)
	if err != nil {
		return "", err
	}
	if err := repo.SetRef(ctx, ref, commit); err != nil {
		return "", fmt.Errorf("updatecachetest: deploying %s: %w", imageRef, err)
	}
	return commit, nil
}
