package importer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"math"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
)

// Commit metadata keys of a layer commit, in our own namespace (ostree-ext
// once wrote a similar ostree.tar-filtered and later dropped it).
const (
	// FilteredKey (a{su}): entries the path rules dropped, per top-level name.
	FilteredKey = "updatecache.import.filtered"
	// SpecialKey (u): device and FIFO entries dropped.
	SpecialKey = "updatecache.import.special-dropped"
)

// maxFilteredNames bounds the distinct top-level names FilteredKey
// records, so a hostile layer cannot grow the commit without bound;
// further names are counted under overflowName, which no path component
// can equal.
const (
	maxFilteredNames = 256
	overflowName     = "/"
)

// zstdMaxWindow is the largest zstd window accepted: the zstd tool's own
// default limit (--memory=128MB), so any layer it can unpack we can, and a
// frame cannot make us allocate more.
const zstdMaxWindow = 128 << 20

// LayerOptions describe the layer blob ImportLayer reads and how.
type LayerOptions struct {
	Blob
	// KeepVar keeps /var at var instead of moving it to
	// usr/share/factory/var, for systems that ship /var in the image.
	KeepVar bool
	// AllowNonUsr keeps top-level entries other than usr, etc and var
	// (opt, boot, ...) instead of dropping them.
	AllowNonUsr bool
	// Timestamp is the layer commit's time. The zero value means the Unix
	// epoch, so importing the same layer always yields the same commit.
	Timestamp time.Time
}

// LayerResult describes an imported layer.
type LayerResult struct {
	Commit string // the layer commit
	Ref    string // the blob ref now pointing at it
	// Filtered counts the entries the path rules dropped, per top-level
	// name (also recorded in the commit under FilteredKey).
	Filtered map[string]uint32
	// Special counts the device and FIFO entries dropped (SpecialKey).
	Special uint32
	// Size and TarSize are the compressed and uncompressed byte counts.
	Size, TarSize int64
	// Objects counts the objects written and those already present.
	Objects ostree.StageStats
}

// ImportLayer reads one layer blob from r and stores it in repo as ostree-ext
// stores a plain ("derived") layer: a commit of the layer's tree, after
// ostree-ext's path rules, under the ref ostree/container/blob/<escaped
// digest>. The blob is streamed once: decompressed, hashed (both the blob
// and the tar), and each file's content is hashed and written as it goes,
// never held in memory. Objects are staged in a transaction (see
// ostree.Stage) and move into objects/ only once both digests (and the
// size, if given) match, then the commit is written and the ref set. On
// any error the ref is not touched and the staging directory is removed;
// at worst (a failure after the objects moved) unreferenced objects
// remain, which prune removes.
//
// Entries become OSTree content as `ostree commit --tree=tar=...
// --tar-autocreate-parents` makes them, which is what ostree-ext runs, so
// the layer commit's tree matches libostree's for the same tar, with these
// documented differences: xattrs are recorded sorted by name (libostree's
// tar path keeps libarchive's order, which reverses the archive's, so its
// checksums then depend on the archive writer), and a hard link takes its
// target's content when the link entry is read (libostree resolves links
// at the end, so a target replaced later in the same layer differs).
//
// Per entry:
//   - Names are normalised and mapped by ostree-ext's rules (see the
//     package documentation); ".." or invalid UTF-8 is an error.
//   - Owners and permission bits come from the tar header, xattrs from
//     SCHILY.xattr.* PAX records. In a bare-user-only repository they are
//     canonicalised as `ostree commit` does there.
//   - A directory seen twice keeps the metadata of the last entry; a file
//     (or symlink, or hard link) seen twice is the last one. Replacing a
//     directory by a non-directory or the reverse is an error, as in
//     libostree.
//   - A parent directory missing from the tar is created 0755, owned like
//     the entry that needed it, and, as libostree does, every directory
//     above it is then reset to that metadata too.
//   - A path whose parent chain holds a non-directory (a symlink named
//     earlier, say) is an error: nothing is ever resolved through a link.
//   - A hard link must name a regular file or symlink earlier in the
//     layer, after the same path rules.
//   - Devices and FIFOs are dropped and counted; OCI whiteout files are
//     kept as ordinary files and applied by WriteImageMergeCommit.
//   - Sparse files are refused (ErrInvalidEntry): their holes could expand
//     a small layer without bound, and image tools do not write them.
func ImportLayer(ctx context.Context, repo *ostree.Repo, r io.Reader, opts LayerOptions) (*LayerResult, error) {
	ls, err := openLayer(r, opts.Blob)
	if err != nil {
		return nil, err
	}
	defer ls.close()

	st, err := repo.BeginStage(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	li := &layerImport{
		repo:     repo,
		stage:    st,
		filter:   pathFilter{keepVar: opts.KeepVar, allowNonUsr: opts.AllowNonUsr},
		filtered: map[string]uint32{},
	}
	if err := li.readTar(ctx, tar.NewReader(ls)); err != nil {
		return nil, err
	}
	if err := ls.verify(); err != nil {
		return nil, err
	}

	rootTree, err := st.WriteTree(ctx, li.root)
	if err != nil {
		return nil, err
	}
	if err := st.Commit(ctx); err != nil {
		return nil, err
	}
	md := li.metadata()
	ts := opts.Timestamp
	if ts.IsZero() {
		ts = time.Unix(0, 0)
	}
	commit, err := repo.WriteCommit(ctx, &ostree.Commit{Metadata: md, Timestamp: ts, RootTree: rootTree, RootMeta: li.root.MetaChecksum()})
	if err != nil {
		return nil, err
	}
	if err := repo.SetRef(ctx, ls.ref, commit); err != nil {
		return nil, err
	}
	return &LayerResult{
		Commit:   commit,
		Ref:      ls.ref,
		Filtered: li.filtered,
		Special:  li.special,
		Size:     ls.blob.n,
		TarSize:  ls.tar.n,
		Objects:  st.Stats(),
	}, nil
}

// parseDigest checks an expected digest from the options.
func parseDigest(what, s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%w: layer %s %q: %w", ErrInvalidOptions, what, s, err)
	}
	return d, nil
}

func checkDigest(what string, want digest.Digest, h hash.Hash) error {
	if got := digest.NewDigest(want.Algorithm(), h); got != want {
		return &DigestError{What: what, Expected: want.String(), Actual: got.String()}
	}
	return nil
}

type compression int

const (
	uncompressed compression = iota
	gzipCompressed
	zstdCompressed
)

// compressionOf maps OCI and Docker layer media types to their compression.
func compressionOf(mediaType string) (compression, error) {
	switch mediaType {
	case "application/vnd.oci.image.layer.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar":
		return uncompressed, nil
	case "application/vnd.oci.image.layer.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.docker.image.rootfs.diff.tar.gzip",
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return gzipCompressed, nil
	case "application/vnd.oci.image.layer.v1.tar+zstd",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return zstdCompressed, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnsupportedMediaType, mediaType)
}

// decompress returns the uncompressed stream of r and a function releasing
// the decompressor.
func decompress(c compression, r io.Reader) (io.Reader, func(), error) {
	switch c {
	case gzipCompressed:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, streamError(err)
		}
		return zr, func() { zr.Close() }, nil
	case zstdCompressed:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %w", ErrInvalidTar, err)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// blobReader reads the layer blob for ImportLayer: it counts the bytes and
// marks its errors as readErrors, so they are not mistaken for a malformed
// tar.
type blobReader struct {
	r io.Reader
	n int64
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// readError is an error reading the layer blob itself (the network, the
// size check), as opposed to one in what it holds.
type readError struct{ err error }

func (e *readError) Error() string { return "read layer blob: " + e.err.Error() }

func (e *readError) Unwrap() error { return e.err }

// streamError marks an error met while reading the tar stream as
// ErrInvalidTar, unless it came from reading the blob; an early end is
// io.ErrUnexpectedEOF.
func streamError(err error) error {
	if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, err)
	}
	if re := (*readError)(nil); errors.As(err, &re) || errors.Is(err, ErrInvalidLayer) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrInvalidTar, err)
}

// countingReader counts the bytes read through it and fails once they
// exceed limit.
type countingReader struct {
	r     io.Reader
	n     int64
	limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if left := c.limit - c.n; int64(len(p)) > left {
		p = p[:left+1] // one byte beyond the limit is enough to notice
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n, fmt.Errorf("%w: more than %d bytes uncompressed", ErrLayerTooLarge, c.limit)
	}
	return n, err
}

// layerImport is the state of one layer's import: the tree built so far
// (names and checksums only) and the counts of what was dropped.
type layerImport struct {
	repo     *ostree.Repo
	stage    *ostree.Stage
	filter   pathFilter
	root     *ostree.MutableTree
	filtered map[string]uint32
	special  uint32
}

// readTar adds every entry of tr to the tree.
func (li *layerImport) readTar(ctx context.Context, tr *tar.Reader) error {
	// A tar without a root entry gets libostree's default root.
	rootMeta, err := li.stage.WriteDirMeta(ctx, ostree.FileMeta{Mode: ostree.ModeDir | 0o755})
	if err != nil {
		return err
	}
	li.root = ostree.NewMutableTree(rootMeta)
	for entries := 1; ; entries++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if entries > MaxLayerEntries {
			return fmt.Errorf("%w: more than %d entries in the layer", ErrTooManyEntries, MaxLayerEntries)
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			// Returned with the header under GODEBUG=tarinsecurepath=0;
			// our own path rules judge names.
			err = nil
		}
		if err != nil {
			return streamError(err)
		}
		if err := li.entry(ctx, hdr, tr); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = streamError(err)
			}
			return &EntryError{Name: hdr.Name, Err: err}
		}
	}
}

// entry adds one tar entry.
func (li *layerImport) entry(ctx context.Context, hdr *tar.Header, content io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil // archive-wide PAX defaults; nothing OSTree records
	case tar.TypeReg, tar.TypeCont, tar.TypeLink, tar.TypeSymlink, tar.TypeDir,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeGNUSparse:
	default:
		return fmt.Errorf("%w: unsupported entry type %q", ErrInvalidEntry, hdr.Typeflag)
	}
	if isSparse(hdr) {
		// A few bytes of sparse map can describe terabytes of holes, which
		// archive/tar would hand us as zeros. Image tools never write them.
		return fmt.Errorf("%w: sparse files are not supported", ErrInvalidEntry)
	}
	p, dropped, err := li.filter.apply(hdr.Name)
	if err != nil {
		return err
	}
	if dropped != "" {
		li.countFiltered(dropped)
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		li.special = saturatingInc(li.special)
		return nil
	}
	meta, err := li.metaOf(hdr)
	if err != nil {
		return err
	}
	if p == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root is not a directory", ErrInvalidEntry)
		}
		sum, err := li.stage.WriteDirMeta(ctx, li.canonical(meta))
		if err != nil {
			return err
		}
		li.root.SetMetaChecksum(sum)
		return nil
	}
	dirPath, name := splitPath(p)
	parent, err := li.parent(ctx, dirPath, meta.UID, meta.GID)
	if err != nil {
		return err
	}
	var sum string
	switch hdr.Typeflag {
	case tar.TypeDir:
		dm, err := li.stage.WriteDirMeta(ctx, li.canonical(meta))
		if err != nil {
			return err
		}
		dir, err := parent.EnsureDir(strings.Clone(name), dm)
		if errors.Is(err, ostree.ErrNotDirectory) {
			return fmt.Errorf("%w: a directory replacing a file: %w", ErrTypeConflict, err)
		}
		if err != nil {
			return err
		}
		dir.SetMetaChecksum(dm)
		return checkDirSize(parent, dirPath)
	case tar.TypeLink:
		if sum, err = li.linkTarget(hdr.Linkname); err != nil {
			return err
		}
	case tar.TypeSymlink:
		meta.Mode |= ostree.ModeSymlink
		meta.Symlink = hdr.Linkname
		if sum, err = li.writeContent(ctx, meta, 0, nil); err != nil {
			return err
		}
	default:
		meta.Mode |= ostree.ModeRegular
		if sum, err = li.writeContent(ctx, meta, hdr.Size, content); err != nil {
			return err
		}
	}
	if err := parent.SetFile(strings.Clone(name), sum, false); err != nil {
		if errors.Is(err, ostree.ErrNotDirectory) {
			return fmt.Errorf("%w: a file replacing a directory: %w", ErrTypeConflict, err)
		}
		return err
	}
	return checkDirSize(parent, dirPath)
}

// isSparse reports a GNU sparse file, old-style or in PAX records.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// metaOf returns the owner, mode (the file type only for a directory) and
// xattrs of an entry.
func (li *layerImport) metaOf(hdr *tar.Header) (ostree.FileMeta, error) {
	// 4294967295 is (uid_t)-1, which chown takes as "leave unchanged": a
	// bare repository could not store it, and its object would not match
	// its checksum. Refused in every mode, so an image imports alike
	// everywhere.
	if hdr.Uid < 0 || hdr.Uid >= math.MaxUint32 || hdr.Gid < 0 || hdr.Gid >= math.MaxUint32 {
		return ostree.FileMeta{}, fmt.Errorf("%w: owner %d:%d is not a 32-bit id other than 4294967295", ErrInvalidEntry, hdr.Uid, hdr.Gid)
	}
	meta := ostree.FileMeta{UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), Mode: uint32(hdr.Mode) & ostree.ModePermsMask}
	if hdr.Typeflag == tar.TypeDir {
		meta.Mode |= ostree.ModeDir
	}
	const xattrPrefix = "SCHILY.xattr."
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
			if name == "" {
				return ostree.FileMeta{}, fmt.Errorf("%w: xattr with an empty name", ErrInvalidEntry)
			}
			meta.Xattrs = append(meta.Xattrs, ostree.Xattr{Name: name, Value: []byte(v)})
		}
	}
	ostree.SortXattrs(meta.Xattrs)
	return meta, nil
}

// canonical applies what `ostree commit` does to entries (not to the
// parents it creates) in a bare-user-only repository.
func (li *layerImport) canonical(meta ostree.FileMeta) ostree.FileMeta {
	if li.repo.Mode() == ostree.ModeBareUserOnly {
		return meta.CanonicalPermissions()
	}
	return meta
}

// writeContent stores a content object.
func (li *layerImport) writeContent(ctx context.Context, meta ostree.FileMeta, size int64, r io.Reader) (string, error) {
	sum, err := li.stage.WriteContent(ctx, li.canonical(meta), size, r)
	if errors.Is(err, ostree.ErrInvalidContent) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", fmt.Errorf("%w: %w", ErrInvalidEntry, err)
	}
	return sum, err
}

// parent returns the directory dirPath ("" for the root). When some
// directory along it is missing, libostree's --tar-autocreate-parents
// creates it, and in doing so sets every directory from the root down to
// the entry's parent, existing ones included, to 0755 owned by the entry's
// owner, without xattrs; this does the same so trees match.
func (li *layerImport) parent(ctx context.Context, dirPath string, uid, gid uint32) (*ostree.MutableTree, error) {
	dir, missing, err := li.walk(dirPath)
	if err != nil || !missing {
		return dir, err
	}
	meta, err := li.stage.WriteDirMeta(ctx, ostree.FileMeta{UID: uid, GID: gid, Mode: ostree.ModeDir | 0o755})
	if err != nil {
		return nil, err
	}
	dir = li.root
	dir.SetMetaChecksum(meta)
	above := ""
	for c := range strings.SplitSeq(dirPath, "/") {
		parent := dir
		if dir, err = dir.EnsureDir(strings.Clone(c), meta); err != nil {
			return nil, err
		}
		if err := checkDirSize(parent, above); err != nil {
			return nil, err
		}
		dir.SetMetaChecksum(meta)
		above = path.Join(above, c)
	}
	return dir, nil
}

// The tree being built is held in memory (as libostree holds its mutable
// tree), about 110 bytes per entry, so a hostile layer could grow it
// without bound: the entries of one directory are capped at ten times the
// largest directory of the OS images seen (a manual section, a firmware
// tree), and those of a layer at ten times the files of a whole Fedora
// CoreOS tree (ErrTooManyEntries).
const (
	MaxDirEntries   = 100_000
	MaxLayerEntries = 1_000_000
)

// checkDirSize refuses a directory that has grown past MaxDirEntries.
func checkDirSize(dir *ostree.MutableTree, dirPath string) error {
	n, err := dir.Len()
	if err == nil && n > MaxDirEntries {
		err = fmt.Errorf("%w: %q has more than %d entries", ErrTooManyEntries, "/"+dirPath, MaxDirEntries)
	}
	return err
}

// walk looks up the directory dirPath. It reports missing (and returns
// nil) when a component does not exist, and an ErrNotDirectory error when
// one is not a directory.
func (li *layerImport) walk(dirPath string) (dir *ostree.MutableTree, missing bool, err error) {
	dir = li.root
	if dirPath == "" {
		return dir, false, nil
	}
	for c := range strings.SplitSeq(dirPath, "/") {
		file, sub, err := dir.Lookup(c)
		if err != nil {
			return nil, false, err
		}
		if sub == nil {
			if file != "" {
				return nil, false, fmt.Errorf("%w: %q in %q", ErrNotDirectory, c, dirPath)
			}
			return nil, true, nil
		}
		dir = sub
	}
	return dir, false, nil
}

// linkTarget returns the content checksum of a hard link's target, named
// by the same path rules as entries.
func (li *layerImport) linkTarget(linkname string) (string, error) {
	p, dropped, err := li.filter.apply(linkname)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: target: %w", ErrHardlink, err)
	case dropped != "":
		return "", fmt.Errorf("%w: target %q is filtered out (under %q)", ErrHardlink, linkname, dropped)
	case p == "":
		return "", fmt.Errorf("%w: target %q is the root", ErrHardlink, linkname)
	}
	dirPath, name := splitPath(p)
	dir, missing, err := li.walk(dirPath)
	if err != nil || missing {
		return "", fmt.Errorf("%w: target %q not found earlier in the layer", ErrHardlink, linkname)
	}
	file, sub, err := dir.Lookup(name)
	if err != nil {
		return "", err
	}
	if sub != nil {
		return "", fmt.Errorf("%w: target %q is a directory", ErrHardlink, linkname)
	}
	if file == "" {
		return "", fmt.Errorf("%w: target %q not found earlier in the layer", ErrHardlink, linkname)
	}
	return file, nil
}

func (li *layerImport) countFiltered(top string) {
	if _, ok := li.filtered[top]; !ok && len(li.filtered) >= maxFilteredNames {
		top = overflowName
	}
	li.filtered[top] = saturatingInc(li.filtered[top])
}

func saturatingInc(n uint32) uint32 {
	if n == math.MaxUint32 {
		return n
	}
	return n + 1
}

// metadata is the layer commit's metadata: what was dropped, in a
// deterministic order.
func (li *layerImport) metadata() gvariant.VarDict {
	names := slices.Sorted(maps.Keys(li.filtered))
	entries := make([]gvariant.DictEntry, len(names))
	for i, n := range names {
		entries[i] = gvariant.DictEntry{Key: n, Value: li.filtered[n]}
	}
	return gvariant.VarDict{
		{Key: FilteredKey, Value: gvariant.Variant{Type: "a{su}", Value: entries}},
		{Key: SpecialKey, Value: gvariant.Variant{Type: "u", Value: li.special}},
	}
}

// splitPath splits a normalised non-root path into its directory ("" at
// the top) and last component.
func splitPath(p string) (dir, name string) {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}
