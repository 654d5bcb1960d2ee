package ostree

import (
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"
)

// maxSymlinkHops is how many symbolic links one lookup follows before it
// fails with ELOOP, as Linux does.
const maxSymlinkHops = 40

// TreeFS returns the tree root, whose objects are in r, as a read-only
// io/fs.FS that also implements fs.ReadLinkFS: what a checkout of it would
// show, without checking it out. Directories list their entries sorted by
// name; files read their content from the content objects, checked
// against their checksums at the end. Symbolic links are followed within
// the tree, as on the system the tree is booted as: an absolute target
// starts at the tree's root, and ".." at the root stays there. (A
// libostree process that opens paths in a checkout resolves an absolute
// target against its own root instead.) Directories are loaded as they
// are looked into (see MutableTree); the view is not safe for concurrent
// use, nor while the tree changes.
func (r *Repo) TreeFS(root *MutableTree) fs.FS {
	return &treeFS{repo: r, root: root}
}

type treeFS struct {
	repo *Repo
	root *MutableTree
}

// treeEntry is what a path names: a directory, or a content object and its
// metadata.
type treeEntry struct {
	dir  *MutableTree
	file string
	meta FileMeta
	size int64
}

func (t *treeFS) Open(name string) (fs.File, error) {
	e, err := t.lookup("open", name, true)
	if err != nil {
		return nil, err
	}
	info, err := t.info(path.Base(name), e)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if e.dir != nil {
		return &treeDir{fsys: t, dir: e.dir, info: info, path: name}, nil
	}
	obj, err := t.repo.OpenContent(e.file)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &treeFile{obj: obj, info: info}, nil
}

// ReadLink returns the target of the symbolic link name.
func (t *treeFS) ReadLink(name string) (string, error) {
	e, err := t.lookup("readlink", name, false)
	if err != nil {
		return "", err
	}
	if e.dir != nil || e.meta.Mode&ModeTypeMask != ModeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return e.meta.Symlink, nil
}

// Lstat describes name without following it if it is a symbolic link.
func (t *treeFS) Lstat(name string) (fs.FileInfo, error) {
	e, err := t.lookup("lstat", name, false)
	if err != nil {
		return nil, err
	}
	info, err := t.info(path.Base(name), e)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	return info, nil
}

// lookup resolves name, following symbolic links on the way and, if
// follow, one at the end.
func (t *treeFS) lookup(op, name string, follow bool) (treeEntry, error) {
	if !fs.ValidPath(name) {
		return treeEntry{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	e, err := t.resolve(name, follow)
	if err != nil {
		return treeEntry{}, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return e, nil
}

func (t *treeFS) resolve(name string, follow bool) (treeEntry, error) {
	// dirs is the chain of directories from the root to where the walk
	// is, so that ".." goes back to the directory a link led into.
	dirs := []*MutableTree{t.root}
	var rest []string
	if name != "." {
		rest = strings.Split(name, "/")
	}
	hops := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(dirs) > 1 {
				dirs = dirs[:len(dirs)-1]
			}
			continue
		}
		file, sub, err := dirs[len(dirs)-1].Lookup(c)
		if err != nil {
			return treeEntry{}, err
		}
		if sub != nil {
			dirs = append(dirs, sub)
			continue
		}
		if file == "" {
			return treeEntry{}, fs.ErrNotExist
		}
		e := treeEntry{file: file}
		if e.meta, e.size, err = t.contentMeta(file); err != nil {
			return treeEntry{}, err
		}
		if e.meta.Mode&ModeTypeMask != ModeSymlink || len(rest) == 0 && !follow {
			if len(rest) > 0 {
				return treeEntry{}, syscall.ENOTDIR
			}
			return e, nil
		}
		if hops++; hops > maxSymlinkHops {
			return treeEntry{}, syscall.ELOOP
		}
		if strings.HasPrefix(e.meta.Symlink, "/") {
			dirs = dirs[:1]
		}
		rest = append(strings.Split(e.meta.Symlink, "/"), rest...)
	}
	return treeEntry{dir: dirs[len(dirs)-1]}, nil
}

// contentMeta reads a content object's metadata and size.
func (t *treeFS) contentMeta(checksum string) (FileMeta, int64, error) {
	obj, err := t.repo.OpenContent(checksum)
	if err != nil {
		return FileMeta{}, 0, err
	}
	obj.Close()
	return obj.Meta, obj.Size, nil
}

// info describes an entry as name.
func (t *treeFS) info(name string, e treeEntry) (fs.FileInfo, error) {
	if e.dir == nil {
		return &treeInfo{name: name, mode: e.meta.Mode, size: e.size}, nil
	}
	data, err := t.repo.ReadMetadataObject(e.dir.MetaChecksum(), ObjectDirMeta)
	if err != nil {
		return nil, err
	}
	_, _, mode, _, err := DecodeDirMeta(data)
	if err != nil {
		return nil, err
	}
	return &treeInfo{name: name, mode: mode}, nil
}

// treeInfo is an entry's fs.FileInfo. Trees record no times.
type treeInfo struct {
	name string
	mode uint32 // st_mode
	size int64
}

func (i *treeInfo) Name() string       { return i.name }
func (i *treeInfo) Size() int64        { return i.size }
func (i *treeInfo) ModTime() time.Time { return time.Time{} }
func (i *treeInfo) IsDir() bool        { return i.mode&ModeTypeMask == ModeDir }
func (i *treeInfo) Sys() any           { return nil }

// Mode converts the st_mode.
func (i *treeInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.mode & 0o777)
	switch i.mode & ModeTypeMask {
	case ModeDir:
		m |= fs.ModeDir
	case ModeSymlink:
		m |= fs.ModeSymlink
	}
	if i.mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if i.mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if i.mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// treeFile is an open regular file.
type treeFile struct {
	obj  *ContentObject
	info fs.FileInfo
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *treeFile) Read(p []byte) (int, error) { return f.obj.Read(p) }
func (f *treeFile) Close() error               { return f.obj.Close() }

// treeDir is an open directory.
type treeDir struct {
	fsys    *treeFS
	dir     *MutableTree
	info    fs.FileInfo
	path    string
	entries []fs.DirEntry // nil until the first ReadDir
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *treeDir) Close() error               { return nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: syscall.EISDIR}
}

// ReadDir lists the directory as fs.ReadDirFile says, sorted by name.
func (d *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.entries == nil {
		entries, err := d.list()
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: err}
		}
		d.entries = entries
	}
	if n <= 0 {
		list := d.entries
		d.entries = d.entries[len(d.entries):]
		return list, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	list := d.entries[:min(n, len(d.entries))]
	d.entries = d.entries[len(list):]
	return list, nil
}

// list describes every entry (a file's type comes from its object).
func (d *treeDir) list() ([]fs.DirEntry, error) {
	files, dirs, err := d.dir.Entries()
	if err != nil {
		return nil, err
	}
	entries := make([]fs.DirEntry, 0, len(files)+len(dirs))
	for _, f := range files {
		meta, size, err := d.fsys.contentMeta(f.Checksum)
		if err != nil {
			return nil, err
		}
		entries = append(entries, fs.FileInfoToDirEntry(&treeInfo{name: f.Name, mode: meta.Mode, size: size}))
	}
	for _, sub := range dirs {
		info, err := d.fsys.info(sub.Name, treeEntry{dir: sub.Tree})
		if err != nil {
			return nil, err
		}
		entries = append(entries, fs.FileInfoToDirEntry(info))
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

var _ fs.ReadLinkFS = (*treeFS)(nil)
