package importer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
)

// OCI whiteout names (image-spec layer.md): ".wh.NAME" hides NAME of the
// lower layers, ".wh..wh..opq" hides everything the lower layers put in
// its directory; other ".wh..wh." names are AUFS bookkeeping, ignored.
const (
	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh."
	opaqueWhiteout     = ".wh..wh..opq"
)

// maxMergeDepth bounds recursion over layer trees read from the
// repository; a path cannot be deeper than PATH_MAX allows.
const maxMergeDepth = maxPathLen / 2

// MergeOptions tune MergeLayers.
type MergeOptions struct {
	// LowerDirMeta keeps the metadata (owner, mode, xattrs) of a directory
	// from the lowest layer that has it, as ostree-ext's checkout-based
	// merge does (a union checkout leaves existing directories alone,
	// except one an opaque whiteout empties: that one it makes anew). By
	// default a directory takes the metadata of the highest layer that has
	// it, as overlayfs and container runtimes show it.
	LowerDirMeta bool
}

// MergeLayers stacks layer commits (lowest first; commit checksums or refs
// such as blob refs) into one tree, applying OCI whiteouts as it goes, and
// returns the merged root dirtree and dirmeta checksums. It works on the
// dirtree objects directly: a layer's directories are read once (to find
// whiteouts), lower directories only where a higher layer changes them,
// nothing is checked out, and unchanged subtrees keep their objects.
// Whiteout files never appear in the result. In a directory, a layer's
// whiteouts apply to the layers below only, so a layer may delete a name
// and provide it anew; a file replaces a directory and the reverse.
//
// The new dirtree objects are in the repository when it returns, but
// nothing references them yet: a caller writing its own commit should hold
// repo.Lock(ctx, ostree.LockShared) across MergeLayers and the commit so a
// concurrent prune cannot remove them. WriteMergeCommit does.
func MergeLayers(ctx context.Context, repo *ostree.Repo, layerCommits []string, opts MergeOptions) (rootTree, rootMeta string, err error) {
	st, err := repo.BeginStage(ctx)
	if err != nil {
		return "", "", err
	}
	defer st.Close()
	tree, meta, err := mergeInto(ctx, repo, st, layerCommits, opts)
	if err != nil {
		return "", "", err
	}
	return tree, meta, st.Commit(ctx)
}

// WriteMergeCommit merges the layers as MergeLayers does (default
// options), commits the result with metadata md and timestamp ts (no
// parent, as ostree-ext's merge commits), sets ref to it and returns the
// commit checksum. The repository lock is held shared throughout.
func WriteMergeCommit(ctx context.Context, repo *ostree.Repo, ref string, layers []string, md gvariant.VarDict, ts time.Time) (string, error) {
	st, err := repo.BeginStage(ctx)
	if err != nil {
		return "", err
	}
	defer st.Close()
	tree, meta, err := mergeInto(ctx, repo, st, layers, MergeOptions{})
	if err != nil {
		return "", err
	}
	if err := st.Commit(ctx); err != nil {
		return "", err
	}
	commit, err := repo.WriteCommit(ctx, &ostree.Commit{Metadata: md, Timestamp: ts, RootTree: tree, RootMeta: meta})
	if err != nil {
		return "", err
	}
	if err := repo.SetRef(ctx, ref, commit); err != nil {
		return "", err
	}
	return commit, nil
}

// merger applies layers to a tree.
type merger struct {
	ctx   context.Context
	repo  *ostree.Repo
	opts  MergeOptions
	clean map[string]bool // dirtree checksum -> no whiteout anywhere below
}

func mergeInto(ctx context.Context, repo *ostree.Repo, st *ostree.Stage, layers []string, opts MergeOptions) (tree, meta string, err error) {
	if len(layers) == 0 {
		return "", "", fmt.Errorf("%w: no layers to merge", ErrInvalidOptions)
	}
	root, err := newMerger(ctx, repo, opts).stack(nil, layers)
	if err != nil {
		return "", "", err
	}
	if tree, err = st.WriteTree(ctx, root); err != nil {
		return "", "", err
	}
	return tree, root.MetaChecksum(), nil
}

func newMerger(ctx context.Context, repo *ostree.Repo, opts MergeOptions) *merger {
	return &merger{ctx: ctx, repo: repo, opts: opts, clean: map[string]bool{}}
}

// stack lays the layers over root, lowest first; with a nil root, the
// first layer is the bottom one.
func (m *merger) stack(root *ostree.MutableTree, layers []string) (*ostree.MutableTree, error) {
	for _, layer := range layers {
		c, err := m.readCommit(layer)
		if err != nil {
			return nil, err
		}
		if root == nil {
			root, err = m.newDir(c.RootTree, c.RootMeta, 0)
		} else {
			err = m.apply(root, c.RootTree, c.RootMeta, false, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("merge layer %s: %w", layer, err)
		}
	}
	return root, nil
}

// readCommit reads the commit a checksum or ref names.
func (m *merger) readCommit(rev string) (*ostree.Commit, error) {
	sum, err := m.repo.ResolveRef(rev)
	if err != nil {
		return nil, fmt.Errorf("merge layer %s: %w", rev, err)
	}
	c, err := m.repo.ReadCommit(sum)
	if err != nil {
		return nil, fmt.Errorf("merge layer %s: %w", rev, err)
	}
	return c, nil
}

// newDir returns a layer's directory where no lower layer has one: the
// stored tree itself, read lazily, when nothing below it is a whiteout,
// else a copy with the whiteouts left out.
func (m *merger) newDir(tree, meta string, depth int) (*ostree.MutableTree, error) {
	clean, err := m.isClean(tree, depth)
	if err != nil {
		return nil, err
	}
	if clean {
		return m.repo.OpenMutableTree(tree, meta)
	}
	dir := ostree.NewMutableTree(meta)
	return dir, m.apply(dir, tree, meta, true, depth)
}

// apply lays the layer directory (tree, meta) over dst. fresh means no
// lower layer had dst.
func (m *merger) apply(dst *ostree.MutableTree, tree, meta string, fresh bool, depth int) error {
	if depth > maxMergeDepth {
		return fmt.Errorf("%w: layer tree deeper than %d", ostree.ErrCorrupt, maxMergeDepth)
	}
	if err := m.ctx.Err(); err != nil {
		return err
	}
	if fresh || !m.opts.LowerDirMeta {
		dst.SetMetaChecksum(meta)
	}
	files, dirs, err := m.readDirTree(tree)
	if err != nil {
		return err
	}
	// Whiteouts first: they apply to the lower layers only.
	for _, f := range files {
		switch {
		case f.Name == opaqueWhiteout:
			// The checkout-based merge removes the directory and makes it
			// anew, with this layer's metadata.
			dst.Clear()
			dst.SetMetaChecksum(meta)
		case strings.HasPrefix(f.Name, whiteoutMetaPrefix):
		case strings.HasPrefix(f.Name, whiteoutPrefix):
			if _, err := dst.Remove(f.Name[len(whiteoutPrefix):]); err != nil {
				return err
			}
		}
	}
	for _, f := range files {
		if strings.HasPrefix(f.Name, whiteoutPrefix) {
			continue
		}
		if err := dst.SetFile(f.Name, f.Checksum, true); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		_, lower, err := dst.Lookup(d.Name)
		if err != nil {
			return err
		}
		if lower != nil {
			if err := m.apply(lower, d.TreeChecksum, d.MetaChecksum, false, depth+1); err != nil {
				return err
			}
			continue
		}
		sub, err := m.newDir(d.TreeChecksum, d.MetaChecksum, depth+1)
		if err != nil {
			return err
		}
		if err := dst.SetDir(d.Name, sub); err != nil {
			return err
		}
	}
	return nil
}

// isClean reports whether no whiteout file lies anywhere in the tree.
func (m *merger) isClean(tree string, depth int) (bool, error) {
	if clean, ok := m.clean[tree]; ok {
		return clean, nil
	}
	if depth > maxMergeDepth {
		return false, fmt.Errorf("%w: layer tree deeper than %d", ostree.ErrCorrupt, maxMergeDepth)
	}
	files, dirs, err := m.readDirTree(tree)
	if err != nil {
		return false, err
	}
	clean := true
	for _, f := range files {
		if strings.HasPrefix(f.Name, whiteoutPrefix) {
			clean = false
			break
		}
	}
	for _, d := range dirs {
		if !clean {
			break
		}
		if clean, err = m.isClean(d.TreeChecksum, depth+1); err != nil {
			return false, err
		}
	}
	m.clean[tree] = clean
	return clean, nil
}

func (m *merger) readDirTree(tree string) ([]ostree.DirTreeFile, []ostree.DirTreeDir, error) {
	data, err := m.repo.ReadMetadataObject(tree, ostree.ObjectDirTree)
	if err != nil {
		return nil, nil, err
	}
	return ostree.DecodeDirTree(data)
}
