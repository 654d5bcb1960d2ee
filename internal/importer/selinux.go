package importer

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/selinux"
)

// LoadTreePolicy finds the SELinux policy a tree ships, as ostree-ext's
// merge commit finds it (libostree 2022.7's OstreeSePolicy on a checkout:
// etc/selinux/config, else usr/etc/selinux/config, and the policy type
// it names), reading the tree's objects in place. It returns nil when the
// tree enables no policy; an unusable one is an error wrapping
// ErrSELinuxPolicy and the selinux package's sentinel.
func LoadTreePolicy(repo *ostree.Repo, root *ostree.MutableTree) (*selinux.Policy, error) {
	p, err := selinux.LoadPolicy(repo.TreeFS(root))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSELinuxPolicy, err)
	}
	return p, nil
}

// RelabelCommit writes a commit of rev's tree labelled with policy, as
// `ostree commit --tree=ref=REV --selinux-policy=ROOT` does (see
// labeller), with rev's metadata and timestamp and no parent, as
// ostree-ext relabels a layer commit, and returns its checksum; rev's own
// checksum when no label changes. No ref is set. The repository lock is
// held shared throughout.
func RelabelCommit(ctx context.Context, repo *ostree.Repo, rev string, policy *selinux.Policy) (string, error) {
	st, err := repo.BeginStage(ctx)
	if err != nil {
		return "", err
	}
	defer st.Close()
	l := newLabeller(ctx, repo, st, policy)
	commit, c, err := l.commit(rev)
	if err != nil {
		return "", err
	}
	if err := st.Commit(ctx); err != nil {
		return "", err
	}
	if c == nil {
		return commit, nil
	}
	return repo.WriteCommit(ctx, c)
}

// labeller gives trees the labels of an SELinux policy exactly as
// libostree 2022.7's commit modifier does when a stored tree is committed
// again with a policy (what ostree-ext's merge commit and relabel_layers
// amount to; see the selinux package's doc): every directory, regular
// file and symbolic link is looked up by its path ("/" for the root) and
// full st_mode; with a label, any security.selinux xattr is dropped and
// security.selinux = label + NUL appended after the others; without one
// (no match, <<none>>) the xattrs stay as they are. Objects whose xattrs
// change are written anew (Stage.CopyContent); the others are kept.
//
// Results are remembered, so labelling the layer commits after the merged
// tree is mostly lookups: an object is read once, relabelled once per
// label (nearly always one), and a stored subtree at a given path is
// labelled once. What is remembered is about 100 bytes an object.
type labeller struct {
	ctx    context.Context
	repo   *ostree.Repo
	st     *ostree.Stage
	policy *selinux.Policy

	objects map[checksum]objectLabel // content objects and dirmetas
	trees   map[treeKey]labelledTree // stored subtree at a path -> labelled
}

// checksum is an object's checksum in binary: half the hex's memory.
type checksum [32]byte

// parseChecksum decodes a checksum the repository gave (valid hex).
func parseChecksum(s string) (c checksum) {
	hex.Decode(c[:], []byte(s))
	return c
}

func (c checksum) String() string { return hex.EncodeToString(c[:]) }

// objectLabel is what is known of an object: its st_mode and the object
// it became with the last label it was given.
type objectLabel struct {
	mode     uint32
	label    string // "" until labelled
	labelled checksum
}

type treeKey struct {
	path       string
	tree, meta checksum
}

type labelledTree struct{ tree, meta string }

func newLabeller(ctx context.Context, repo *ostree.Repo, st *ostree.Stage, policy *selinux.Policy) *labeller {
	return &labeller{ctx: ctx, repo: repo, st: st, policy: policy,
		objects: map[checksum]objectLabel{}, trees: map[treeKey]labelledTree{}}
}

// commit labels the tree of the commit rev names. It returns rev's
// checksum and, when a label changed, the relabelled commit to write
// (after the Stage's objects are committed).
func (l *labeller) commit(rev string) (string, *ostree.Commit, error) {
	sum, err := l.repo.ResolveRef(rev)
	if err != nil {
		return "", nil, err
	}
	c, err := l.repo.ReadCommit(sum)
	if err != nil {
		return "", nil, err
	}
	tree, meta, err := l.storedDir(c.RootTree, c.RootMeta, "/", 0)
	if err != nil {
		return "", nil, fmt.Errorf("label %s: %w", rev, err)
	}
	if tree == c.RootTree && meta == c.RootMeta {
		return sum, nil, nil
	}
	return sum, &ostree.Commit{Metadata: c.Metadata, Timestamp: c.Timestamp, RootTree: tree, RootMeta: meta}, nil
}

// childPath is the lookup path of name in the directory at dir.
func childPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// mutableDir labels a directory being built and returns its labelled
// dirtree and dirmeta checksums; the dirtree objects are staged.
func (l *labeller) mutableDir(t *ostree.MutableTree, path string, depth int) (tree, meta string, err error) {
	if stored, ok := t.StoredTree(); ok {
		return l.storedDir(stored, t.MetaChecksum(), path, depth)
	}
	if depth > maxMergeDepth {
		return "", "", fmt.Errorf("%w: tree deeper than %d", ostree.ErrCorrupt, maxMergeDepth)
	}
	files, subs, err := t.Entries()
	if err != nil {
		return "", "", err
	}
	dirs := make([]ostree.DirTreeDir, len(subs))
	for i, sub := range subs {
		tree, meta, err := l.mutableDir(sub.Tree, childPath(path, sub.Name), depth+1)
		if err != nil {
			return "", "", err
		}
		dirs[i] = ostree.DirTreeDir{Name: sub.Name, TreeChecksum: tree, MetaChecksum: meta}
	}
	return l.dir(path, t.MetaChecksum(), files, dirs)
}

// storedDir labels a directory stored as the dirtree and dirmeta objects
// tree and meta.
func (l *labeller) storedDir(tree, meta, path string, depth int) (string, string, error) {
	key := treeKey{path: path, tree: parseChecksum(tree), meta: parseChecksum(meta)}
	if done, ok := l.trees[key]; ok {
		return done.tree, done.meta, nil
	}
	if depth > maxMergeDepth {
		return "", "", fmt.Errorf("%w: tree deeper than %d", ostree.ErrCorrupt, maxMergeDepth)
	}
	data, err := l.repo.ReadMetadataObject(tree, ostree.ObjectDirTree)
	if err != nil {
		return "", "", err
	}
	files, dirs, err := ostree.DecodeDirTree(data)
	if err != nil {
		return "", "", err
	}
	for i, d := range dirs {
		if dirs[i].TreeChecksum, dirs[i].MetaChecksum, err = l.storedDir(d.TreeChecksum, d.MetaChecksum, childPath(path, d.Name), depth+1); err != nil {
			return "", "", err
		}
	}
	newTree, newMeta, err := l.dir(path, meta, files, dirs)
	if err != nil {
		return "", "", err
	}
	l.trees[key] = labelledTree{tree: newTree, meta: newMeta}
	return newTree, newMeta, nil
}

// dir labels a directory's files and its dirmeta, given its labelled
// subdirectories, and stages its dirtree.
func (l *labeller) dir(path, meta string, files []ostree.DirTreeFile, dirs []ostree.DirTreeDir) (string, string, error) {
	if err := l.ctx.Err(); err != nil {
		return "", "", err
	}
	for i, f := range files {
		sum, err := l.file(childPath(path, f.Name), f.Checksum)
		if err != nil {
			return "", "", err
		}
		files[i].Checksum = sum
	}
	meta, err := l.dirMeta(path, meta)
	if err != nil {
		return "", "", err
	}
	data, err := ostree.EncodeDirTree(files, dirs)
	if err != nil {
		return "", "", err
	}
	tree, err := l.st.WriteMetadata(l.ctx, ostree.ObjectDirTree, data)
	return tree, meta, err
}

// file labels the content object sum at path.
func (l *labeller) file(path, sum string) (string, error) {
	var obj *ostree.ContentObject
	defer func() {
		if obj != nil {
			obj.Close()
		}
	}()
	open := func() (err error) {
		obj, err = l.repo.OpenContent(sum)
		return err
	}
	return l.object(path, sum, open, func() (*ostree.FileMeta, error) {
		if obj == nil {
			if err := open(); err != nil {
				return nil, err
			}
		}
		return &obj.Meta, nil
	}, func(meta ostree.FileMeta) (string, error) {
		labelled, err := l.st.CopyContent(l.ctx, obj, meta)
		if err != nil {
			return "", fmt.Errorf("label %s: %w", path, err)
		}
		return labelled, nil
	})
}

// dirMeta labels the dirmeta object sum of the directory at path.
func (l *labeller) dirMeta(path, sum string) (string, error) {
	var meta *ostree.FileMeta
	read := func() (*ostree.FileMeta, error) {
		if meta != nil {
			return meta, nil
		}
		data, err := l.repo.ReadMetadataObject(sum, ostree.ObjectDirMeta)
		if err != nil {
			return nil, err
		}
		m := ostree.FileMeta{}
		if m.UID, m.GID, m.Mode, m.Xattrs, err = ostree.DecodeDirMeta(data); err != nil {
			return nil, err
		}
		meta = &m
		return meta, nil
	}
	return l.object(path, sum, func() error {
		_, err := read()
		return err
	}, read, func(m ostree.FileMeta) (string, error) {
		return l.st.WriteDirMeta(l.ctx, m)
	})
}

// object labels the object sum (a content object or a dirmeta) at path:
// open is called first when the object is new to the labeller, and meta
// then returns its metadata; write stages it with new metadata.
func (l *labeller) object(path, sum string, open func() error, meta func() (*ostree.FileMeta, error), write func(ostree.FileMeta) (string, error)) (string, error) {
	key := parseChecksum(sum)
	known, ok := l.objects[key]
	if !ok {
		if err := open(); err != nil {
			return "", err
		}
		m, err := meta()
		if err != nil {
			return "", err
		}
		known = objectLabel{mode: m.Mode}
		l.objects[key] = known
	}
	label, ok, err := l.policy.Label(path, known.mode)
	if err != nil || !ok {
		return sum, err
	}
	if known.label == label {
		return known.labelled.String(), nil
	}
	m, err := meta()
	if err != nil {
		return "", err
	}
	labelled := sum
	if xattrs, changed := withLabel(m.Xattrs, label); changed {
		relabelled := *m
		relabelled.Xattrs = xattrs
		if labelled, err = write(relabelled); err != nil {
			return "", err
		}
	}
	known.label, known.labelled = label, parseChecksum(labelled)
	l.objects[key] = known
	return labelled, nil
}

// withLabel returns xattrs as libostree labels them: without any
// security.selinux, then security.selinux = label + NUL last. changed is
// false when that is xattrs as they are.
func withLabel(xattrs []ostree.Xattr, label string) (labelled []ostree.Xattr, changed bool) {
	value := selinux.XattrValue(label)
	if n := len(xattrs); n > 0 && xattrs[n-1].Name == selinux.XattrName && bytes.Equal(xattrs[n-1].Value, value) &&
		!slices.ContainsFunc(xattrs[:n-1], func(x ostree.Xattr) bool { return x.Name == selinux.XattrName }) {
		return xattrs, false
	}
	labelled = make([]ostree.Xattr, 0, len(xattrs)+1)
	for _, x := range xattrs {
		if x.Name != selinux.XattrName {
			labelled = append(labelled, x)
		}
	}
	return append(labelled, ostree.Xattr{Name: selinux.XattrName, Value: value}), true
}
