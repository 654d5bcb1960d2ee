package updatecachetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
)

// CommitEntry is one directory, regular file or symlink of an OSTree
// commit's tree (see WriteCommit).
type CommitEntry struct {
	// Path in the tree, such as "usr/bin/bash"; a leading "/" is dropped,
	// and "" is the root directory. Missing parent directories are made
	// 0755 and owned by root.
	Path string
	// Mode gives the type (fs.ModeDir, fs.ModeSymlink, else a regular
	// file), the permission bits and fs.ModeSetuid, fs.ModeSetgid and
	// fs.ModeSticky. Permission bits of 0 mean 0644 for a file and 0755
	// for a directory; a symlink is always 0777.
	Mode     fs.FileMode
	UID, GID uint32
	Content  []byte // a regular file's bytes
	Target   string // a symlink's target
	Xattrs   map[string][]byte
	// Link, if set, makes this entry a hard link to the file or symlink
	// at that earlier path: the same content object. The other fields are
	// ignored.
	Link string
}

// CommitSpec describes an OSTree commit for WriteCommit.
type CommitSpec struct {
	Entries       []CommitEntry
	Subject, Body string
	Timestamp     time.Time // whole seconds; the zero value is the Unix epoch
	Parent        string    // parent commit checksum, if any
	// Version, Bootable and Linux set the metadata keys "version",
	// "ostree.bootable" and "ostree.linux" (the kernel version), which
	// ostree-ext's encapsulation turns into image labels.
	Version  string
	Bootable bool
	Linux    string
	// Metadata holds more string metadata keys; DetachedMetadata, string
	// keys of the commit's detached metadata (.commitmeta), as a signature
	// would be stored.
	Metadata         map[string]string
	DetachedMetadata map[string]string
	// Ref, if set, is pointed at the commit.
	Ref string
}

// WriteCommit writes the commit spec describes into the OSTree repository
// at repoPath and returns its checksum. Repositories in archive and
// bare-user mode are written by any user; bare mode needs root (owners and
// security.* xattrs are real). The result is the same commit `ostree
// commit` makes of the same tree with the same metadata, so a test can
// build a realistic OS commit (see SampleCommit) and encapsulate it
// (Encapsulate) without root or rpm-ostree.
func WriteCommit(ctx context.Context, repoPath string, spec CommitSpec) (string, error) {
	repo, err := ostree.Open(repoPath)
	if err != nil {
		return "", err
	}
	st, err := repo.BeginStage(ctx)
	if err != nil {
		return "", err
	}
	defer st.Close()
	w := &treeWriter{ctx: ctx, st: st, files: map[string]string{}}
	if err := w.init(); err != nil {
		return "", err
	}
	for _, e := range spec.Entries {
		if err := w.add(e); err != nil {
			return "", fmt.Errorf("updatecachetest: commit entry %q: %w", e.Path, err)
		}
	}
	tree, err := st.WriteTree(ctx, w.root)
	if err != nil {
		return "", err
	}
	if err := st.Commit(ctx); err != nil {
		return "", err
	}
	c := &ostree.Commit{Subject: spec.Subject, Body: spec.Body, Parent: spec.Parent,
		Timestamp: spec.Timestamp.UTC(), RootTree: tree, RootMeta: w.root.MetaChecksum()}
	if spec.Timestamp.IsZero() {
		c.Timestamp = time.Unix(0, 0).UTC()
	}
	if spec.Version != "" {
		c.Metadata.Set("version", gvariant.NewString(spec.Version))
	}
	if spec.Bootable {
		c.Metadata.Set("ostree.bootable", gvariant.Variant{Type: "b", Value: true})
	}
	if spec.Linux != "" {
		c.Metadata.Set("ostree.linux", gvariant.NewString(spec.Linux))
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Metadata)) {
		c.Metadata.Set(k, gvariant.NewString(spec.Metadata[k]))
	}
	commit, err := repo.WriteCommit(ctx, c)
	if err != nil {
		return "", err
	}
	if len(spec.DetachedMetadata) > 0 {
		var md gvariant.VarDict
		for _, k := range slices.Sorted(maps.Keys(spec.DetachedMetadata)) {
			md.Set(k, gvariant.NewString(spec.DetachedMetadata[k]))
		}
		if err := repo.WriteDetachedMetadata(ctx, commit, md); err != nil {
			return "", err
		}
	}
	if spec.Ref != "" {
		if err := repo.SetRef(ctx, spec.Ref, commit); err != nil {
			return "", err
		}
	}
	return commit, nil
}

// treeWriter builds a commit's tree in a Stage.
type treeWriter struct {
	ctx        context.Context
	st         *ostree.Stage
	root       *ostree.MutableTree
	defaultDir string            // dirmeta of parents made on the way
	files      map[string]string // path -> content checksum, for hard links
}

func (w *treeWriter) init() error {
	meta, err := w.st.WriteDirMeta(w.ctx, ostree.FileMeta{Mode: ostree.ModeDir | 0o755})
	if err != nil {
		return err
	}
	w.defaultDir, w.root = meta, ostree.NewMutableTree(meta)
	return nil
}

// add writes one entry into the tree.
func (w *treeWriter) add(e CommitEntry) error {
	p := strings.Trim(e.Path, "/")
	meta := ostree.FileMeta{UID: e.UID, GID: e.GID, Mode: unixPerm(e.Mode)}
	for _, name := range slices.Sorted(maps.Keys(e.Xattrs)) {
		meta.Xattrs = append(meta.Xattrs, ostree.Xattr{Name: name, Value: e.Xattrs[name]})
	}
	if p == "" {
		if e.Mode&fs.ModeDir == 0 {
			return errors.New("the root must be a directory")
		}
		sum, err := w.dirMeta(meta)
		if err == nil {
			w.root.SetMetaChecksum(sum)
		}
		return err
	}
	parent, name, err := w.parent(p)
	if err != nil {
		return err
	}
	var sum string
	switch {
	case e.Link != "":
		if sum = w.files[strings.Trim(e.Link, "/")]; sum == "" {
			return fmt.Errorf("hard link to %q, which is no earlier file or symlink", e.Link)
		}
	case e.Mode&fs.ModeDir != 0:
		dm, err := w.dirMeta(meta)
		if err != nil {
			return err
		}
		dir, err := parent.EnsureDir(name, dm)
		if err == nil {
			dir.SetMetaChecksum(dm)
		}
		return err
	case e.Mode&fs.ModeSymlink != 0:
		meta.Mode = ostree.ModeSymlink | 0o777
		meta.Symlink = e.Target
		if sum, err = w.st.WriteContent(w.ctx, meta, 0, nil); err != nil {
			return err
		}
	default:
		if meta.Mode&0o777 == 0 {
			meta.Mode |= 0o644
		}
		meta.Mode |= ostree.ModeRegular
		if sum, err = w.st.WriteContent(w.ctx, meta, int64(len(e.Content)), bytes.NewReader(e.Content)); err != nil {
			return err
		}
	}
	w.files[p] = sum
	return parent.SetFile(name, sum, false)
}

func (w *treeWriter) dirMeta(meta ostree.FileMeta) (string, error) {
	if meta.Mode&0o777 == 0 {
		meta.Mode |= 0o755
	}
	meta.Mode |= ostree.ModeDir
	return w.st.WriteDirMeta(w.ctx, meta)
}

// parent returns the directory holding p, making missing ones.
func (w *treeWriter) parent(p string) (*ostree.MutableTree, string, error) {
	dir := w.root
	comps := strings.Split(p, "/")
	for _, c := range comps[:len(comps)-1] {
		var err error
		if dir, err = dir.EnsureDir(c, w.defaultDir); err != nil {
			return nil, "", err
		}
	}
	return dir, comps[len(comps)-1], nil
}

// unixPerm converts the permission and special bits of an fs.FileMode to
// st_mode bits.
func unixPerm(m fs.FileMode) uint32 {
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	return perm
}
