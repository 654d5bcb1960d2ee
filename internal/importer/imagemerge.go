package importer

import (
	"context"
	"fmt"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
)

// ImageMergeOptions describe an image's merge commit (WriteImageMergeCommit).
type ImageMergeOptions struct {
	// Base is the commit of an encapsulated image (what its commit layer
	// holds); "" for an image of plain layers only.
	Base string
	// Layers are the layer commits (or refs) of the derived layers, lowest
	// first.
	Layers []string
	// Metadata and Timestamp are the commit's: the caller gives the keys
	// ostree-ext writes (ostree.manifest-digest, ostree.manifest,
	// ostree.container.image-config, ostree.importer.version) and the
	// image's creation time (the zero value is the Unix epoch).
	Metadata  gvariant.VarDict
	Timestamp time.Time
	// Relabel, when set, is called on the merged tree before it is written
	// if the image has derived layers, where ostree-ext relabels the whole
	// tree with the SELinux policy the tree itself ships. It may replace
	// the tree's content and dirmeta objects, writing new ones to st.
	// Without derived layers the base commit's labels are kept as they
	// are, as ostree-ext keeps them.
	Relabel func(ctx context.Context, st *ostree.Stage, root *ostree.MutableTree) error
}

// runtimeInjected are files container builds leave behind (buildah and
// podman bind-mount them); ostree-ext's cleanup_root removes them from the
// merged tree when they are empty regular files.
var runtimeInjected = []string{"hostname", "resolv.conf"}

// WriteImageMergeCommit writes an image's merge commit as ostree-ext's
// write_merge_commit_impl does, sets ref to it and returns its checksum:
//   - the base commit's tree is taken as it is (whiteout files in it are
//     kept, as ostree-ext's checkout of the base keeps them);
//   - each derived layer is laid over it with its OCI whiteouts applied,
//     and a directory keeps the metadata of the lowest layer that has it
//     as a union checkout does;
//   - an empty regular file at usr/etc/hostname or usr/etc/resolv.conf is
//     removed;
//   - the parent is the base commit (none without one).
//
// So an image without derived layers has the base commit's root tree,
// checksum for checksum, unless the base holds one of those empty files.
// The repository lock is held shared throughout.
func WriteImageMergeCommit(ctx context.Context, repo *ostree.Repo, ref string, opts ImageMergeOptions) (string, error) {
	if opts.Base == "" && len(opts.Layers) == 0 {
		return "", fmt.Errorf("%w: neither a base commit nor layers to merge", ErrInvalidOptions)
	}
	st, err := repo.BeginStage(ctx)
	if err != nil {
		return "", err
	}
	defer st.Close()
	m := newMerger(ctx, repo)
	var root *ostree.MutableTree
	parent := ""
	if opts.Base != "" {
		base, err := m.readCommit(opts.Base)
		if err != nil {
			return "", err
		}
		if parent, err = repo.ResolveRef(opts.Base); err != nil {
			return "", err
		}
		if root, err = repo.OpenMutableTree(base.RootTree, base.RootMeta); err != nil {
			return "", err
		}
	}
	if root, err = m.stack(root, opts.Layers); err != nil {
		return "", err
	}
	if err := cleanupRoot(repo, root); err != nil {
		return "", err
	}
	if opts.Relabel != nil && len(opts.Layers) > 0 {
		if err := opts.Relabel(ctx, st, root); err != nil {
			return "", err
		}
	}
	tree, err := st.WriteTree(ctx, root)
	if err != nil {
		return "", err
	}
	if err := st.Commit(ctx); err != nil {
		return "", err
	}
	ts := opts.Timestamp
	if ts.IsZero() {
		ts = time.Unix(0, 0)
	}
	commit, err := repo.WriteCommit(ctx, &ostree.Commit{Metadata: opts.Metadata, Parent: parent, Timestamp: ts, RootTree: tree, RootMeta: root.MetaChecksum()})
	if err != nil {
		return "", err
	}
	if err := repo.SetRef(ctx, ref, commit); err != nil {
		return "", err
	}
	return commit, nil
}

// cleanupRoot removes the empty files container builds inject into
// usr/etc.
func cleanupRoot(repo *ostree.Repo, root *ostree.MutableTree) error {
	etc := root
	for _, name := range []string{"usr", "etc"} {
		_, dir, err := etc.Lookup(name)
		if err != nil || dir == nil {
			return err
		}
		etc = dir
	}
	for _, name := range runtimeInjected {
		file, _, err := etc.Lookup(name)
		if err != nil {
			return err
		}
		if file == "" {
			continue
		}
		obj, err := repo.OpenContent(file)
		if err != nil {
			return err
		}
		empty := obj.Meta.Mode&ostree.ModeTypeMask == ostree.ModeRegular && obj.Size == 0
		obj.Close()
		if empty {
			if _, err := etc.Remove(name); err != nil {
				return err
			}
		}
	}
	return nil
}
