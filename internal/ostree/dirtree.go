package ostree

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNotDirectory: a MutableTree operation expected a directory under a
// name that holds a file, or the reverse.
var ErrNotDirectory = errors.New("ostree: not a directory")

// maxTreeDepth bounds recursion over trees read from a repository; a
// checkout could not create anything deeper than PATH_MAX allows anyway.
const maxTreeDepth = 2048

// MutableTree is a directory being built or edited in memory: names
// mapped to content checksums or to subdirectories, and the directory's
// dirmeta checksum. It never holds file content, only names and
// checksums. A tree opened from the repository (Repo.OpenMutableTree)
// reads each dirtree object only when that directory is first looked
// into, and a directory never looked into is written back as the object
// it came from, without being read.
type MutableTree struct {
	repo *Repo // for reading dirtrees lazily; nil for a tree built from scratch
	meta string
	// tree is the dirtree the contents come from; "" when built here.
	// Until loaded, files and dirs are nil and tree is their source.
	tree   string
	loaded bool
	files  map[string][sha256.Size]byte // content checksums, raw: half the memory of hex
	dirs   map[string]*MutableTree
}

// NewMutableTree returns an empty directory with the given dirmeta.
func NewMutableTree(metaChecksum string) *MutableTree {
	return &MutableTree{meta: metaChecksum, loaded: true, files: map[string][sha256.Size]byte{}, dirs: map[string]*MutableTree{}}
}

// OpenMutableTree returns the directory stored as the given dirtree and
// dirmeta objects, read lazily.
func (r *Repo) OpenMutableTree(treeChecksum, metaChecksum string) (*MutableTree, error) {
	if !ValidChecksum(treeChecksum) || !ValidChecksum(metaChecksum) {
		return nil, fmt.Errorf("%w: tree %q, meta %q", ErrInvalidChecksum, treeChecksum, metaChecksum)
	}
	return &MutableTree{repo: r, meta: metaChecksum, tree: treeChecksum}, nil
}

// MetaChecksum returns the directory's dirmeta checksum.
func (t *MutableTree) MetaChecksum() string { return t.meta }

// SetMetaChecksum replaces the directory's dirmeta checksum.
func (t *MutableTree) SetMetaChecksum(checksum string) { t.meta = checksum }

// load reads the directory's dirtree on first use.
func (t *MutableTree) load() error {
	if t.loaded {
		return nil
	}
	data, err := t.repo.ReadMetadataObject(t.tree, ObjectDirTree)
	if err != nil {
		return err
	}
	files, dirs, err := DecodeDirTree(data)
	if err != nil {
		return err
	}
	t.files = make(map[string][sha256.Size]byte, len(files))
	for _, f := range files {
		t.files[f.Name] = sumOf(f.Checksum)
	}
	t.dirs = make(map[string]*MutableTree, len(dirs))
	for _, d := range dirs {
		t.dirs[d.Name] = &MutableTree{repo: t.repo, meta: d.MetaChecksum, tree: d.TreeChecksum}
	}
	t.loaded = true
	return nil
}

// SubTree is a named subdirectory of a MutableTree.
type SubTree struct {
	Name string
	Tree *MutableTree
}

// Entries returns the directory's files and subdirectories, each sorted
// by name.
func (t *MutableTree) Entries() ([]DirTreeFile, []SubTree, error) {
	if err := t.load(); err != nil {
		return nil, nil, err
	}
	files := make([]DirTreeFile, 0, len(t.files))
	for name, sum := range t.files {
		files = append(files, DirTreeFile{Name: name, Checksum: hex.EncodeToString(sum[:])})
	}
	dirs := make([]SubTree, 0, len(t.dirs))
	for name, d := range t.dirs {
		dirs = append(dirs, SubTree{Name: name, Tree: d})
	}
	slices.SortFunc(files, func(a, b DirTreeFile) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(dirs, func(a, b SubTree) int { return strings.Compare(a.Name, b.Name) })
	return files, dirs, nil
}

// StoredTree returns the dirtree a directory opened from the repository
// still is, never loaded and so unchanged; ok is false for any other.
func (t *MutableTree) StoredTree() (tree string, ok bool) {
	return t.tree, !t.loaded
}

func checkName(name string) error {
	if !validFilename(name) {
		return fmt.Errorf("%w: %q", ErrInvalidFilename, name)
	}
	return nil
}

// Lookup returns what name holds: a content checksum, or a subdirectory,
// or neither when it is absent.
func (t *MutableTree) Lookup(name string) (file string, dir *MutableTree, err error) {
	if err := t.load(); err != nil {
		return "", nil, err
	}
	if sum, ok := t.files[name]; ok {
		file = hex.EncodeToString(sum[:])
	}
	return file, t.dirs[name], nil
}

// Len returns how many entries (files and directories) the directory has;
// an unloaded one is read.
func (t *MutableTree) Len() (int, error) {
	if err := t.load(); err != nil {
		return 0, err
	}
	return len(t.files) + len(t.dirs), nil
}

// SetFile makes name the content object checksum, replacing a file of
// that name; replacing a directory is an error wrapping ErrNotDirectory
// unless replaceDir.
func (t *MutableTree) SetFile(name, checksum string, replaceDir bool) error {
	if err := checkName(name); err != nil {
		return err
	}
	if !ValidChecksum(checksum) {
		return fmt.Errorf("%w: %q", ErrInvalidChecksum, checksum)
	}
	if err := t.load(); err != nil {
		return err
	}
	if _, ok := t.dirs[name]; ok {
		if !replaceDir {
			return fmt.Errorf("%w: %q is a directory, not replaced by a file", ErrNotDirectory, name)
		}
		delete(t.dirs, name)
	}
	t.files[name] = sumOf(checksum)
	return nil
}

// EnsureDir returns the subdirectory name, creating it with dirmeta
// metaChecksum when absent. A file of that name is an error wrapping
// ErrNotDirectory.
func (t *MutableTree) EnsureDir(name, metaChecksum string) (*MutableTree, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := t.load(); err != nil {
		return nil, err
	}
	if d, ok := t.dirs[name]; ok {
		return d, nil
	}
	if _, ok := t.files[name]; ok {
		return nil, fmt.Errorf("%w: %q is a file", ErrNotDirectory, name)
	}
	d := NewMutableTree(metaChecksum)
	t.dirs[name] = d
	return d, nil
}

// SetDir makes name the directory sub, replacing whatever was there.
func (t *MutableTree) SetDir(name string, sub *MutableTree) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := t.load(); err != nil {
		return err
	}
	delete(t.files, name)
	t.dirs[name] = sub
	return nil
}

// Remove deletes name, file or directory, and reports whether it was there.
func (t *MutableTree) Remove(name string) (bool, error) {
	if err := t.load(); err != nil {
		return false, err
	}
	_, isFile := t.files[name]
	_, isDir := t.dirs[name]
	delete(t.files, name)
	delete(t.dirs, name)
	return isFile || isDir, nil
}

// Clear empties the directory, keeping its dirmeta.
func (t *MutableTree) Clear() {
	t.files, t.dirs, t.loaded, t.tree = map[string][sha256.Size]byte{}, map[string]*MutableTree{}, true, ""
}

// WriteDirMeta stages the dirmeta object for a directory (meta.Mode must
// be a directory's) and returns its checksum.
func (s *Stage) WriteDirMeta(ctx context.Context, meta FileMeta) (string, error) {
	if meta.Symlink != "" {
		return "", fmt.Errorf("%w: dirmeta with a symlink target %q", ErrInvalidObject, meta.Symlink)
	}
	data, err := EncodeDirMeta(meta.UID, meta.GID, meta.Mode, meta.Xattrs)
	if err != nil {
		return "", err
	}
	return s.writeMetadata(ctx, ObjectDirMeta, data)
}

// WriteTree stages the dirtree objects of t and everything below it that
// changed, and returns t's dirtree checksum. Directories never loaded keep
// the dirtree they came from, which must be in the repository; every
// dirmeta and content object referenced must be in the repository or
// staged (else ErrObjectNotFound), so a commit of the result is complete.
// (The contents of an unloaded directory were complete when it was written
// and are not walked again.)
func (s *Stage) WriteTree(ctx context.Context, t *MutableTree) (string, error) {
	return s.writeTree(ctx, t, 0)
}

func (s *Stage) writeTree(ctx context.Context, t *MutableTree, depth int) (string, error) {
	if depth > maxTreeDepth {
		return "", fmt.Errorf("%w: write tree: more than %d levels deep", ErrInvalidObject, maxTreeDepth)
	}
	if err := s.require(t.meta, ObjectDirMeta); err != nil {
		return "", err
	}
	if !t.loaded {
		return t.tree, s.require(t.tree, ObjectDirTree)
	}
	contentType := s.repo.contentObjectType()
	files := make([]DirTreeFile, 0, len(t.files))
	for name, sum := range t.files {
		checksum := hex.EncodeToString(sum[:])
		if err := s.requireKey(objectKey{sum: sum, t: contentType}, checksum); err != nil {
			return "", err
		}
		files = append(files, DirTreeFile{Name: name, Checksum: checksum})
	}
	dirs := make([]DirTreeDir, 0, len(t.dirs))
	for name, d := range t.dirs {
		sum, err := s.writeTree(ctx, d, depth+1)
		if err != nil {
			return "", err
		}
		dirs = append(dirs, DirTreeDir{Name: name, TreeChecksum: sum, MetaChecksum: d.meta})
	}
	data, err := EncodeDirTree(files, dirs)
	if err != nil {
		return "", err
	}
	return s.writeMetadata(ctx, ObjectDirTree, data)
}

// require checks that an object is staged or in the repository.
func (s *Stage) require(checksum string, t ObjectType) error {
	if !ValidChecksum(checksum) {
		return fmt.Errorf("%w: %s %q", ErrInvalidChecksum, t, checksum)
	}
	return s.requireKey(objectKey{sum: sumOf(checksum), t: t}, checksum)
}

// requireKey is require of an object given by key (checksum is its hex).
func (s *Stage) requireKey(k objectKey, checksum string) error {
	ok, err := s.present(k)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s %s", ErrObjectNotFound, k.t, checksum)
	}
	return nil
}
