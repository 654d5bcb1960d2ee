package importer

import (
	"context"
	"fmt"
	"strings"

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

// merger applies layers to a tree as ostree-ext's checkout-based merge
// does: a union of the layers, whiteouts applied, and a directory keeps the
// metadata of the lowest layer that has it (a union checkout leaves
// existing directories alone, except one an opaque whiteout empties: that
// one it makes anew).
type merger struct {
	ctx   context.Context
	repo  *ostree.Repo
	clean map[string]bool // dirtree checksum -> no whiteout anywhere below
}

func newMerger(ctx context.Context, repo *ostree.Repo) *merger {
	return &merger{ctx: ctx, repo: repo, clean: map[string]bool{}}
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
	if fresh {
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
