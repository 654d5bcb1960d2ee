package importer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
)

// Size caps of what an encapsulated layer may hold, ostree-ext's: a
// metadata object (commit, commitmeta, dirtree, dirmeta) of up to 10 MiB
// and an xattr set of up to 1 MiB. The distinct xattr sets a layer
// declares (.file-xattrs) are kept until the layer ends, up to
// maxXattrCache bytes in all; published images have a few hundred.
const (
	maxMetadataEntry = 10 << 20
	maxXattrsEntry   = 1 << 20
	maxXattrCache    = 16 << 20
)

// repoPrefix is where an encapsulated layer's objects are.
const repoPrefix = "sysroot/ostree/repo/"

// CommitLayerOptions describe the commit layer of an encapsulated image.
type CommitLayerOptions struct {
	Blob
	// Commit is the checksum the layer's commit must have: the image's
	// ostree.commit label.
	Commit string
}

// ImportCommitLayer imports the commit layer of an image that ostree-ext
// encapsulated (tar format v1): the OSTree commit it carries, under the
// blob ref, as ostree-ext's commit import does. Its chunk layers must be
// imported first (ImportObjectSetLayer): their content objects are part
// of the commit.
//
// Only entries under sysroot/ostree/repo/objects count; the checkout
// paths (hard links such as usr/bin/bash) and the repository skeleton are
// ignored. The .commit object must come first and have the checksum
// opts.Commit (ErrCommitMismatch); its .commitmeta, if it follows, is
// kept as the commit's detached metadata, replacing any the commit had.
// Every object is verified against the checksum its entry names as it is
// written (ErrObjectChecksum), content objects with the xattrs of the
// .file-xattrs-link entry before them, in either of ostree-ext's
// encodings (a hard link to a .file-xattrs object, or the xattrs inline).
// When the stream ends, the digests are checked and so is the commit:
// every object it reaches must now be staged or in the repository
// (ErrIncompleteCommit). Only then do the objects move into objects/, the
// commit is written and the ref set.
//
// On any error the ref is not touched and what was staged is discarded.
func ImportCommitLayer(ctx context.Context, repo *ostree.Repo, r io.Reader, opts CommitLayerOptions) (*LayerResult, error) {
	if !ostree.ValidChecksum(opts.Commit) {
		return nil, fmt.Errorf("%w: commit %q is not a checksum", ErrInvalidOptions, opts.Commit)
	}
	return importObjects(ctx, repo, r, opts.Blob, opts.Commit)
}

// ImportObjectSetLayer imports a chunk layer of an image that ostree-ext
// encapsulated: its content objects (anything else is ErrUnexpectedObject),
// verified as ImportCommitLayer verifies them, recorded under the blob ref
// as the object-set commit ostree-ext makes of them, byte for byte (see
// IsObjectSetCommit), so a blob ref either tool wrote serves both.
//
// On any error the ref is not touched and what was staged is discarded.
func ImportObjectSetLayer(ctx context.Context, repo *ostree.Repo, r io.Reader, b Blob) (*LayerResult, error) {
	return importObjects(ctx, repo, r, b, "")
}

// importObjects imports an encapsulated layer: the commit layer when
// commit (the expected checksum) is set, else an object set.
func importObjects(ctx context.Context, repo *ostree.Repo, r io.Reader, b Blob, commit string) (*LayerResult, error) {
	ls, err := openLayer(r, b)
	if err != nil {
		return nil, err
	}
	defer ls.close()
	st, err := repo.BeginStage(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	w := newStageWriter(ctx, st)
	defer w.wait()
	oi := &objectImport{ctx: ctx, writer: w, commit: commit, xattrSets: map[string][]ostree.Xattr{}}
	if commit == "" {
		oi.objectSet = map[string]bool{}
	}
	err = oi.readTar(tar.NewReader(ls))
	if werr := w.wait(); err == nil {
		err = werr
	}
	if err != nil {
		return nil, err
	}
	if err := ls.verify(); err != nil {
		return nil, err
	}
	oi.stage = st
	var result string
	if commit != "" {
		result, err = oi.finishCommit(repo)
	} else {
		result, err = oi.finishObjectSet(repo)
	}
	if err != nil {
		return nil, err
	}
	if err := repo.SetRef(ctx, ls.ref, result); err != nil {
		return nil, err
	}
	return &LayerResult{Commit: result, Ref: ls.ref, Size: ls.blob.n, TarSize: ls.tar.n, Objects: st.Stats()}, nil
}

// objectImport is the state of an encapsulated layer's import.
type objectImport struct {
	ctx context.Context
	// writer writes the objects while the layer is read; stage is set
	// once it is done.
	writer *stageWriter
	stage  *ostree.Stage

	// commit is the expected commit in the commit layer, "" in a chunk.
	commit      string
	commitData  []byte           // the .commit object, once read
	commitMeta  gvariant.VarDict // its .commitmeta, if any
	hasMeta     bool
	sawObject   bool // an object entry has been read
	afterCommit bool // the previous object entry was the .commit

	// objectSet holds a chunk's content objects; nil in the commit layer.
	objectSet map[string]bool

	// xattrSets are the .file-xattrs objects seen, by checksum;
	// xattrBytes counts their size. pending is the xattrs announced for
	// the next content object.
	xattrSets  map[string][]ostree.Xattr
	xattrBytes int
	pending    *pendingXattrs
}

// pendingXattrs are the xattrs a .file-xattrs-link entry gives the content
// object that must come next.
type pendingXattrs struct {
	object string
	xattrs []ostree.Xattr
}

// readTar handles every entry of the layer.
func (oi *objectImport) readTar(tr *tar.Reader) error {
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			err = nil // our own rules judge names
		}
		if err != nil {
			return streamError(err)
		}
		if err := oi.ctx.Err(); err != nil {
			return err
		}
		if err := oi.entry(hdr, tr); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = streamError(err)
			}
			var ee *EntryError
			if errors.As(err, &ee) {
				return err // the writer's, about an earlier entry
			}
			return &EntryError{Name: hdr.Name, Err: err}
		}
	}
	if oi.pending != nil {
		return fmt.Errorf("%w: xattrs for content object %s, which never came", ErrInvalidObject, oi.pending.object)
	}
	if oi.objectSet == nil && oi.commitData == nil {
		return fmt.Errorf("%w: the commit layer holds no commit object", ErrInvalidObject)
	}
	return nil
}

// objectEntry parses an entry name. It returns the object's checksum and
// kind (its extension) for objects/XX/<62 hex>.<kind>, and ok false for
// entries ostree-ext ignores: anything outside sysroot/ostree/repo, the
// repository's config and refs, its other directories' files.
func objectEntry(name string) (checksum, kind string, ok bool, err error) {
	p, err := normalizePath(name)
	if err != nil {
		return "", "", false, err
	}
	rest, inRepo := strings.CutPrefix(p, repoPrefix)
	switch {
	case !inRepo || rest == "refs" || strings.HasPrefix(rest, "refs/") || rest == "config" || strings.HasSuffix(rest, "/config"):
		return "", "", false, nil
	case strings.HasPrefix(rest, "xattrs/"):
		return "", "", false, fmt.Errorf("%w: %q is tar format v0, which is not supported", ErrUnexpectedObject, name)
	case !strings.HasPrefix(rest, "objects/"):
		return "", "", false, nil
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", "", false, fmt.Errorf("%w: %q is not objects/XX/<checksum>.<type>", ErrInvalidObject, name)
	}
	checksum, kind, _ = strings.Cut(parts[2], ".")
	checksum = parts[1] + checksum
	if !ostree.ValidChecksum(checksum) || len(parts[1]) != 2 {
		return "", "", false, fmt.Errorf("%w: %q does not name an object checksum", ErrInvalidObject, name)
	}
	return checksum, kind, true, nil
}

// entry handles one tar entry.
func (oi *objectImport) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir:
		// Directories are skipped as ostree-ext does; their names still
		// must not escape.
		_, err := normalizePath(hdr.Name)
		return err
	}
	checksum, kind, ok, err := objectEntry(hdr.Name)
	if err != nil || !ok {
		return err
	}
	if isSparse(hdr) {
		// Its holes could expand a small layer into a huge object.
		return fmt.Errorf("%w: a sparse entry", ErrInvalidObject)
	}
	first, afterCommit := !oi.sawObject, oi.afterCommit
	oi.sawObject, oi.afterCommit = true, false
	if oi.objectSet == nil && first && kind != "commit" {
		return fmt.Errorf("%w: a .%s before the commit object, which must come first", ErrUnexpectedObject, kind)
	}
	if oi.pending != nil && kind != "file" {
		return fmt.Errorf("%w: xattrs for content object %s followed by a .%s", ErrInvalidObject, oi.pending.object, kind)
	}
	switch kind {
	case "commit":
		if oi.objectSet != nil || !first {
			return fmt.Errorf("%w: a commit object in a chunk layer, or a second one", ErrUnexpectedObject)
		}
		oi.afterCommit = true
		return oi.readCommit(hdr, r, checksum)
	case "commitmeta":
		if !afterCommit {
			return fmt.Errorf("%w: a .commitmeta not right after its commit", ErrUnexpectedObject)
		}
		return oi.readCommitMeta(hdr, r, checksum)
	case "dirtree", "dirmeta":
		if oi.objectSet != nil {
			return fmt.Errorf("%w: a .%s in a chunk layer, which holds content objects only", ErrUnexpectedObject, kind)
		}
		return oi.writeMetadata(hdr, r, checksum, ostree.ObjectType(kind))
	case "file-xattrs":
		return oi.readXattrSet(hdr, r, checksum)
	case "file-xattrs-link":
		return oi.readXattrsLink(hdr, r, checksum)
	case "file":
		return oi.writeContent(hdr, r, checksum)
	}
	return fmt.Errorf("%w: object type %q", ErrUnexpectedObject, kind)
}

// readRegular reads a regular file entry of at most limit bytes.
func readRegular(hdr *tar.Header, r io.Reader, limit int64) ([]byte, error) {
	if hdr.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("%w: entry type %q, not a regular file", ErrInvalidObject, hdr.Typeflag)
	}
	if hdr.Size > limit {
		return nil, fmt.Errorf("%w: %d bytes, over the limit of %d", ErrInvalidObject, hdr.Size, limit)
	}
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	return data, nil
}

// checkSum compares data's sha256 with the checksum its entry names.
func checkSum(data []byte, checksum string) error {
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != checksum {
		return fmt.Errorf("%w: content has checksum %x", ErrObjectChecksum, sum)
	}
	return nil
}

// readCommit reads and checks the commit object; it is written last.
func (oi *objectImport) readCommit(hdr *tar.Header, r io.Reader, checksum string) error {
	if checksum != oi.commit {
		return fmt.Errorf("%w: the layer holds commit %s, the image names %s", ErrCommitMismatch, checksum, oi.commit)
	}
	data, err := readRegular(hdr, r, maxMetadataEntry)
	if err != nil {
		return err
	}
	if err := checkSum(data, checksum); err != nil {
		return err
	}
	if _, err := ostree.DecodeCommit(data); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidObject, err)
	}
	oi.commitData = data
	return nil
}

// readCommitMeta reads the commit's detached metadata; it is written last.
func (oi *objectImport) readCommitMeta(hdr *tar.Header, r io.Reader, checksum string) error {
	if checksum != oi.commit {
		return fmt.Errorf("%w: .commitmeta of %s after commit %s", ErrInvalidObject, checksum, oi.commit)
	}
	data, err := readRegular(hdr, r, maxMetadataEntry)
	if err != nil {
		return err
	}
	if oi.commitMeta, err = gvariant.UnmarshalVarDict(data); err != nil {
		return fmt.Errorf("%w: .commitmeta: %w", ErrInvalidObject, err)
	}
	oi.hasMeta = true
	return nil
}

// writeMetadata queues a dirtree or dirmeta object, checked here.
func (oi *objectImport) writeMetadata(hdr *tar.Header, r io.Reader, checksum string, t ostree.ObjectType) error {
	data, err := readRegular(hdr, r, maxMetadataEntry)
	if err != nil {
		return err
	}
	if err := checkSum(data, checksum); err != nil {
		return err
	}
	return oi.writer.queue(&writeJob{name: hdr.Name, checksum: checksum, t: t, data: data})
}

// readXattrs reads and decodes an xattr set entry.
func readXattrs(hdr *tar.Header, r io.Reader) ([]byte, []ostree.Xattr, error) {
	data, err := readRegular(hdr, r, maxXattrsEntry)
	if err != nil {
		return nil, nil, err
	}
	xattrs, err := ostree.DecodeXattrs(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidObject, err)
	}
	return data, xattrs, nil
}

// readXattrSet reads a .file-xattrs object, named by its own checksum.
func (oi *objectImport) readXattrSet(hdr *tar.Header, r io.Reader, checksum string) error {
	data, xattrs, err := readXattrs(hdr, r)
	if err != nil {
		return err
	}
	if err := checkSum(data, checksum); err != nil {
		return err
	}
	if _, ok := oi.xattrSets[checksum]; ok {
		return nil
	}
	if oi.xattrBytes += len(data); oi.xattrBytes > maxXattrCache {
		return fmt.Errorf("%w: more than %d bytes of distinct xattr sets", ErrInvalidObject, maxXattrCache)
	}
	oi.xattrSets[checksum] = xattrs
	return nil
}

// readXattrsLink reads the xattrs of the content object that comes next:
// a hard link to a .file-xattrs object, or (ostree-ext since 2025-09) a
// regular file holding them.
func (oi *objectImport) readXattrsLink(hdr *tar.Header, r io.Reader, checksum string) error {
	var xattrs []ostree.Xattr
	switch hdr.Typeflag {
	case tar.TypeLink:
		set, err := xattrSetOf(hdr.Linkname)
		if err != nil {
			return err
		}
		var ok bool
		if xattrs, ok = oi.xattrSets[set]; !ok {
			return fmt.Errorf("%w: xattrs %s not earlier in the layer", ErrInvalidObject, set)
		}
	case tar.TypeReg:
		var err error
		if _, xattrs, err = readXattrs(hdr, r); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: xattrs of entry type %q", ErrInvalidObject, hdr.Typeflag)
	}
	oi.pending = &pendingXattrs{object: checksum, xattrs: xattrs}
	return nil
}

// xattrSetOf returns the checksum of the .file-xattrs object a link
// targets: its last two components are XX/<62 hex>.file-xattrs (ostree-ext
// accepts relative targets such as ../XX/...).
func xattrSetOf(target string) (string, error) {
	parts := strings.Split(target, "/")
	if len(parts) >= 2 {
		dir, file := parts[len(parts)-2], parts[len(parts)-1]
		if rest, ok := strings.CutSuffix(file, ".file-xattrs"); ok && len(dir) == 2 && ostree.ValidChecksum(dir+rest) {
			return dir + rest, nil
		}
	}
	return "", fmt.Errorf("%w: xattrs link to %q, not a .file-xattrs object", ErrInvalidObject, target)
}

// writeContent queues a content object with its pending xattrs.
func (oi *objectImport) writeContent(hdr *tar.Header, r io.Reader, checksum string) error {
	pending := oi.pending
	oi.pending = nil
	if pending == nil || pending.object != checksum {
		return fmt.Errorf("%w: content object %s without its xattrs entry before it", ErrInvalidObject, checksum)
	}
	if oi.objectSet != nil {
		if oi.objectSet[checksum] {
			return fmt.Errorf("%w: content object %s twice", ErrInvalidObject, checksum)
		}
		oi.objectSet[checksum] = true
	}
	if hdr.Uid < 0 || hdr.Uid > math.MaxUint32 || hdr.Gid < 0 || hdr.Gid > math.MaxUint32 {
		return fmt.Errorf("%w: owner %d:%d is outside 32 bits", ErrInvalidObject, hdr.Uid, hdr.Gid)
	}
	meta := ostree.FileMeta{UID: uint32(hdr.Uid), GID: uint32(hdr.Gid), Xattrs: pending.xattrs}
	var size int64
	switch hdr.Typeflag {
	case tar.TypeReg:
		// Format v0 put the file type into the mode; it may be there.
		if t := hdr.Mode &^ int64(ostree.ModePermsMask); t != 0 && t != int64(ostree.ModeRegular) {
			return fmt.Errorf("%w: mode %#o", ErrInvalidObject, hdr.Mode)
		}
		meta.Mode = ostree.ModeRegular | uint32(hdr.Mode)&ostree.ModePermsMask
		size = hdr.Size
	case tar.TypeSymlink:
		// As libostree's write_symlink: a symlink is 0777 whatever the tar says.
		meta.Mode = ostree.ModeSymlink | 0o777
		meta.Symlink = hdr.Linkname
	default:
		return fmt.Errorf("%w: content object of entry type %q", ErrInvalidObject, hdr.Typeflag)
	}
	job := &writeJob{name: hdr.Name, checksum: checksum, meta: meta, size: size}
	if size > queuedObjectSize {
		job.stream = r
	} else if size > 0 {
		job.data = make([]byte, size)
		if _, err := io.ReadFull(r, job.data); err != nil {
			return err
		}
	}
	return oi.writer.queue(job)
}

// finishCommit checks the commit is complete, moves the staged objects
// into the repository and writes the commit and its detached metadata.
func (oi *objectImport) finishCommit(repo *ostree.Repo) (string, error) {
	c, err := ostree.DecodeCommit(oi.commitData)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidObject, err)
	}
	if err := oi.stage.CheckTreeComplete(oi.ctx, c.RootTree, c.RootMeta); err != nil {
		if errors.Is(err, ostree.ErrObjectNotFound) {
			return "", fmt.Errorf("%w: commit %s: %w", ErrIncompleteCommit, oi.commit, err)
		}
		return "", err
	}
	if err := oi.stage.Commit(oi.ctx); err != nil {
		return "", err
	}
	if _, err := repo.WriteMetadataObject(oi.ctx, ostree.ObjectCommit, oi.commitData); err != nil {
		return "", err
	}
	// A pull libostree left unfinished marked the commit partial; it is
	// whole now, as ostree-ext declares once it has imported it.
	if err := repo.MarkCommitComplete(oi.commit); err != nil {
		return "", err
	}
	if oi.hasMeta {
		// The repository lock is held shared by the Stage meanwhile;
		// taking it shared again (and our own lock) cannot deadlock.
		_, err := repo.UpdateDetachedMetadata(oi.ctx, oi.commit, func(gvariant.VarDict) (gvariant.VarDict, error) {
			return oi.commitMeta, nil
		})
		if err != nil {
			return "", err
		}
	}
	return oi.commit, nil
}

// finishObjectSet writes the object-set commit of the chunk's content.
func (oi *objectImport) finishObjectSet(repo *ostree.Repo) (string, error) {
	meta, err := oi.stage.WriteDirMeta(oi.ctx, objectSetDirMeta)
	if err != nil {
		return "", err
	}
	root := ostree.NewMutableTree(meta)
	for checksum := range oi.objectSet {
		if err := root.SetFile(checksum, checksum, false); err != nil {
			return "", err
		}
	}
	tree, err := oi.stage.WriteTree(oi.ctx, root)
	if err != nil {
		return "", err
	}
	if err := oi.stage.Commit(oi.ctx); err != nil {
		return "", err
	}
	return repo.WriteCommit(oi.ctx, objectSetCommit(tree, meta))
}
