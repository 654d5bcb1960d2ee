package importer

import (
	"context"
	"fmt"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/selinux"
)

// ImageMergeOptions describe an image's merge commit (WriteImageMergeCommit).
type ImageMergeOptions struct {
	// Base is the commit of an encapsulated image (what its commit layer
	// holds); "" for an image of plain layers only.
	Base string
	// Layers are the derived layers' blob refs (ostree.LayerRefName),
	// lowest first. Commit checksums do too when nothing is relabelled
	// (NoSELinux, or a tree without a policy); a labelled merge moves
	// the refs, so it refuses them (ErrInvalidOptions).
	Layers []string
	// Metadata and Timestamp are the commit's: the caller gives the keys
	// ostree-ext writes (ostree.manifest-digest, ostree.manifest,
	// ostree.container.image-config, ostree.importer.version) and the
	// image's creation time (the zero value is the Unix epoch).
	Metadata  gvariant.VarDict
	Timestamp time.Time
	// NoSELinux leaves every SELinux label as the base and the layers
	// have it. By default an image with derived layers (every plain
	// image) is labelled as ostree-ext labels it: when the merged tree
	// enables a policy (LoadTreePolicy), the merged tree and each layer
	// commit are labelled with it, and each layer's ref is moved to its
	// relabelled commit. Without derived layers the base commit's labels
	// are kept. A bare-user-only repository, which stores no xattrs, is
	// never labelled.
	NoSELinux bool
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
//   - with derived layers, SELinux labels from the merged tree's policy,
//     on the merged tree and the layer commits (see
//     ImageMergeOptions.NoSELinux and labeller);
//   - the parent is the base commit (none without one).
//
// So an image without derived layers has the base commit's root tree,
// checksum for checksum, unless the base holds one of those empty files.
// An unusable policy is an error wrapping ErrSELinuxPolicy. On any error
// no ref is moved. The layer refs are moved before ref. The repository
// lock is held shared throughout.
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
	var policy *selinux.Policy
	if len(opts.Layers) > 0 && !opts.NoSELinux && repo.Mode() != ostree.ModeBareUserOnly {
		if policy, err = LoadTreePolicy(repo, root); err != nil {
			return "", err
		}
	}
	var tree string
	meta := root.MetaChecksum()
	var relabelled []relabelledLayer
	if policy == nil {
		tree, err = st.WriteTree(ctx, root)
	} else {
		tree, meta, relabelled, err = labelImage(ctx, repo, st, policy, root, opts.Layers)
	}
	if err != nil {
		return "", err
	}
	if err := st.Commit(ctx); err != nil {
		return "", err
	}
	for i, l := range relabelled {
		if relabelled[i].commit, err = repo.WriteCommit(ctx, l.c); err != nil {
			return "", err
		}
	}
	ts := opts.Timestamp
	if ts.IsZero() {
		ts = time.Unix(0, 0)
	}
	commit, err := repo.WriteCommit(ctx, &ostree.Commit{Metadata: opts.Metadata, Parent: parent, Timestamp: ts, RootTree: tree, RootMeta: meta})
	if err != nil {
		return "", err
	}
	for _, l := range relabelled {
		if err := repo.SetRef(ctx, l.ref, l.commit); err != nil {
			return "", err
		}
	}
	if err := repo.SetRef(ctx, ref, commit); err != nil {
		return "", err
	}
	return commit, nil
}

// relabelledLayer is a layer commit to write and its ref to move.
type relabelledLayer struct {
	ref    string
	c      *ostree.Commit
	commit string // once written
}

// labelImage labels the merged tree root and the layer commits (refs)
// with policy, staging the objects, and returns the merged tree's
// labelled dirtree and dirmeta and the layers whose labels changed.
func labelImage(ctx context.Context, repo *ostree.Repo, st *ostree.Stage, policy *selinux.Policy, root *ostree.MutableTree, layers []string) (tree, meta string, relabelled []relabelledLayer, err error) {
	for _, layer := range layers {
		if ostree.ValidChecksum(layer) {
			return "", "", nil, fmt.Errorf("%w: layer %s is a commit, not a ref: relabelling moves its ref", ErrInvalidOptions, layer)
		}
	}
	l := newLabeller(ctx, repo, st, policy)
	if tree, meta, err = l.mutableDir(root, "/", 0); err != nil {
		return "", "", nil, fmt.Errorf("label the merged tree: %w", err)
	}
	for _, layer := range layers {
		_, c, err := l.commit(layer)
		if err != nil {
			return "", "", nil, err
		}
		if c != nil {
			relabelled = append(relabelled, relabelledLayer{ref: layer, c: c})
		}
	}
	return tree, meta, relabelled, nil
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
