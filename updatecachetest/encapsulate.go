package updatecachetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
)

// Labels (and manifest annotations) of images ostree-ext encapsulates.
const (
	// CommitLabel holds the checksum of the OSTree commit inside the image.
	CommitLabel = keys.CommitLabel
	// FinalDiffIDLabel holds the diff_id of the last layer belonging to the
	// commit; the layers after it are derived (plain) layers.
	FinalDiffIDLabel = keys.FinalDiffIDLabel
	// ComponentsAnnotation lists a chunk layer's components (packages),
	// sorted and joined by ",".
	ComponentsAnnotation = keys.ComponentsAnnotation
)

// XattrEncoding selects how an encapsulated image's tar streams carry the
// extended attributes of content objects; importers must read all three.
type XattrEncoding int

const (
	// XattrsInline is ostree-ext's encoding since 2025-09: for each
	// content object, a regular file <object>.file-xattrs-link holding its
	// xattrs (GVariant a(ayay)), and PAX SCHILY.xattr.* records on the
	// object's entry for every xattr but security.selinux.
	XattrsInline XattrEncoding = iota
	// XattrsLinkedPAX is the encoding from 2025-01 to 2025-09: each
	// distinct xattr set once as objects/XX/<sha256 of it>.file-xattrs, a
	// hard link <object>.file-xattrs-link to it per content object, and
	// the PAX records.
	XattrsLinkedPAX
	// XattrsLinked is the encoding before 2025-01, which most published
	// images still use: the .file-xattrs objects and hard links, no PAX
	// records.
	XattrsLinked
)

// Chunk is a chunk layer of an encapsulated image: content objects that
// ostree-ext's chunking groups by the component (package) owning them.
type Chunk struct {
	// Name is the layer's history entry.
	Name string
	// Components become the layer's ostree.components annotation.
	Components []string
	// Paths select the content objects: those of these files and of every
	// file below these directories (paths in the commit, e.g.
	// "usr/bin/bash" or "usr/lib/modules"), not taken by an earlier chunk.
	Paths []string
}

// EncapsulateSpec describes an image for Encapsulate.
type EncapsulateSpec struct {
	// Repo is the path of an OSTree repository (archive, bare-user or
	// bare) holding Commit, a checksum or a ref.
	Repo   string
	Commit string
	// Chunks become the chunk layers, in this order after the commit
	// layer; the content objects no chunk takes go in the commit layer.
	// Without chunks, the image has one layer, as ostree-ext makes it
	// without a component map.
	Chunks []Chunk
	// Derived are plain layers on top, as a Containerfile build adds them.
	Derived []Layer
	// XattrEncoding selects the tar encoding of xattrs.
	XattrEncoding XattrEncoding
	// ParentDirs writes each hard link's parent directories into the
	// chunk's tar first (ostree-ext's tar_create_parent_dirs).
	ParentDirs bool
	// Compression of every layer (Gzip by default, as ostree-ext).
	Compression Compression
	// Created is the config's "created"; by default the commit's time.
	Created      time.Time
	OS           string // default "linux"
	Architecture string // default runtime.GOARCH
	// Labels are more config labels (also copied as manifest annotations).
	Labels map[string]string
}

// Encapsulate builds the OCI image ostree-ext's encapsulation
// (`rpm-ostree compose container-encapsulate`, `ostree container
// encapsulate`) makes of an OSTree commit, tar format v1 ("chunked"), as
// Fedora CoreOS and bootc images are built:
//
//   - Layers[0] is the commit layer: a repository skeleton under
//     sysroot/ostree/repo, the .commit object first, then its .commitmeta,
//     every .dirtree and .dirmeta with the directories of the checkout
//     (usr/etc written as etc, sysroot left out), a synthesised var/tmp,
//     then the content objects no chunk takes.
//   - Layers[1:1+len(Chunks)] are the chunk layers: the skeleton and their
//     content objects, annotated with ostree.components.
//   - The Derived layers follow.
//
// Each content object is written once, objects/XX/<checksum>.file with
// its owner and mode, preceded by its xattrs as XattrEncoding says, and
// followed by one hard link to it per path it has in the tree (usr/bin/bash
// and so on); a zero-size file gets an empty regular file instead. Headers
// are laid out as the Rust tar crate writes them (GNU format, mtime 0,
// long-name records). The config and manifest carry ostree-ext's labels:
// ostree.commit, ostree.final-diffid (the diff_id of the last chunk, or of
// the commit layer), ostree.bootable and containers.bootc=1 when the
// commit is bootable, ostree.linux and org.opencontainers.image.version
// from the commit's metadata.
//
// The image is built in memory; push it with Push or write it with
// WriteLayout like any other.
func Encapsulate(ctx context.Context, spec EncapsulateSpec) (*Image, error) {
	repo, err := ostree.Open(spec.Repo)
	if err != nil {
		return nil, err
	}
	commit, err := repo.ResolveRef(spec.Commit)
	if err != nil {
		return nil, err
	}
	x := &exporter{ctx: ctx, repo: repo, commit: commit, spec: spec, dirMeta: map[string]string{}}
	if x.c, err = repo.ReadCommit(commit); err != nil {
		return nil, err
	}
	remainder, chunks, err := x.chunking()
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: encapsulate %s: %w", commit, err)
	}
	commitTar, err := x.commitLayer(remainder)
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: encapsulate %s: %w", commit, err)
	}
	tars := [][]byte{commitTar}
	for i, ch := range chunks {
		data, err := x.chunkLayer(ch)
		if err != nil {
			return nil, fmt.Errorf("updatecachetest: encapsulate %s: chunk %d: %w", commit, i, err)
		}
		tars = append(tars, data)
	}
	return x.image(tars)
}

// exporter writes one commit's layers.
type exporter struct {
	ctx     context.Context
	repo    *ostree.Repo
	commit  string
	c       *ostree.Commit
	spec    EncapsulateSpec
	dirMeta map[string]string // directory path ("usr/bin") -> dirmeta checksum
}

// chunkObject is a content object and its paths in the tree ("/usr/bin/bash").
type chunkObject struct {
	checksum string
	paths    []string
}

// chunking walks the tree as ostree-ext's Chunking::new does (files of a
// directory in order, then its subdirectories) and splits the content
// objects between the chunks and the remainder, each list sorted by
// checksum.
func (x *exporter) chunking() (remainder []*chunkObject, chunks [][]*chunkObject, err error) {
	byChecksum := map[string]*chunkObject{}
	var walk func(dir, tree, meta string) error
	walk = func(dir, tree, meta string) error {
		x.dirMeta[strings.TrimPrefix(dir, "/")] = meta
		files, dirs, err := x.dirTree(tree)
		if err != nil {
			return err
		}
		for _, f := range files {
			o := byChecksum[f.Checksum]
			if o == nil {
				o = &chunkObject{checksum: f.Checksum}
				byChecksum[f.Checksum] = o
			}
			o.paths = append(o.paths, path.Join(dir, f.Name))
		}
		for _, d := range dirs {
			if err := walk(path.Join(dir, d.Name), d.TreeChecksum, d.MetaChecksum); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("/", x.c.RootTree, x.c.RootMeta); err != nil {
		return nil, nil, err
	}
	all := make([]*chunkObject, 0, len(byChecksum))
	for _, o := range byChecksum {
		all = append(all, o)
	}
	slices.SortFunc(all, func(a, b *chunkObject) int { return strings.Compare(a.checksum, b.checksum) })
	chunks = make([][]*chunkObject, len(x.spec.Chunks))
	for _, o := range all {
		i := slices.IndexFunc(x.spec.Chunks, func(ch Chunk) bool { return ch.takes(o.paths) })
		if i < 0 {
			remainder = append(remainder, o)
		} else {
			chunks[i] = append(chunks[i], o)
		}
	}
	return remainder, chunks, nil
}

// takes reports whether any of paths is, or is below, one of the chunk's.
func (ch Chunk) takes(paths []string) bool {
	for _, p := range paths {
		for _, sel := range ch.Paths {
			sel = "/" + strings.Trim(sel, "/")
			if p == sel || strings.HasPrefix(p, sel+"/") {
				return true
			}
		}
	}
	return false
}

func (x *exporter) dirTree(tree string) ([]ostree.DirTreeFile, []ostree.DirTreeDir, error) {
	data, err := x.repo.ReadMetadataObject(tree, ostree.ObjectDirTree)
	if err != nil {
		return nil, nil, err
	}
	return ostree.DecodeDirTree(data)
}

// layerWriter writes one layer's tar stream, each object once.
type layerWriter struct {
	*exporter
	tw          tarRsWriter
	wroteMeta   map[string]bool // dirtree and dirmeta objects
	wroteXattrs map[string]bool // .file-xattrs objects
	wroteParent map[string]bool // directories written for ParentDirs
	wroteVarTmp bool
}

func (x *exporter) newLayerWriter() *layerWriter {
	return &layerWriter{exporter: x, wroteMeta: map[string]bool{}, wroteXattrs: map[string]bool{}, wroteParent: map[string]bool{}}
}

// repoPrefix is where the objects live in every layer.
const repoPrefix = "sysroot/ostree/repo"

// objectPath is an object's entry name; kind is its extension.
func objectPath(checksum, kind string) string {
	return repoPrefix + "/objects/" + checksum[:2] + "/" + checksum[2:] + "." + kind
}

// skeleton writes the repository's directories and config, as every layer
// starts.
func (w *layerWriter) skeleton() error {
	dirs := []string{"sysroot", "sysroot/ostree", repoPrefix, repoPrefix + "/objects"}
	for i := range 256 {
		dirs = append(dirs, fmt.Sprintf("%s/objects/%02x", repoPrefix, i))
	}
	for _, d := range []string{"extensions", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp", "tmp/cache"} {
		dirs = append(dirs, repoPrefix+"/"+d)
	}
	for _, d := range dirs {
		if err := w.dir(d, 0, 0, 0o755); err != nil {
			return err
		}
	}
	return w.defaultFile(repoPrefix+"/config", []byte("[core]\nrepo_version=1\nmode=bare-split-xattrs\n"))
}

func (w *layerWriter) dir(p string, uid, gid, mode uint32) error {
	h := newGNUHeader()
	h.setType(typeDir)
	h.setOwner(uid, gid)
	h.setMode(mode)
	h.setSize(0)
	return w.tw.appendData(&h, p, nil)
}

// defaultFile writes a root-owned 0644 file.
func (w *layerWriter) defaultFile(p string, data []byte) error {
	h := newGNUHeader()
	h.setType(typeReg)
	h.setOwner(0, 0)
	h.setMode(0o644)
	h.setSize(int64(len(data)))
	return w.tw.appendData(&h, p, data)
}

// metadataObject writes a dirtree or dirmeta object once per layer.
func (w *layerWriter) metadataObject(checksum string, t ostree.ObjectType) error {
	if w.wroteMeta[string(t)+checksum] {
		return nil
	}
	w.wroteMeta[string(t)+checksum] = true
	data, err := w.repo.ReadMetadataObject(checksum, t)
	if err != nil {
		return err
	}
	return w.defaultFile(objectPath(checksum, string(t)), data)
}

// commitLayer writes the commit layer: the structure of the commit, then
// the remainder's content.
func (x *exporter) commitLayer(remainder []*chunkObject) ([]byte, error) {
	w := x.newLayerWriter()
	uid, gid, mode, err := x.readDirMeta(x.c.RootMeta)
	if err != nil {
		return nil, err
	}
	if err := w.dir("./", uid, gid, mode); err != nil {
		return nil, err
	}
	if err := w.skeleton(); err != nil {
		return nil, err
	}
	data, err := x.repo.ReadMetadataObject(x.commit, ostree.ObjectCommit)
	if err != nil {
		return nil, err
	}
	if err := w.defaultFile(objectPath(x.commit, "commit"), data); err != nil {
		return nil, err
	}
	if md, ok, err := x.repo.ReadDetachedMetadata(x.commit); err != nil {
		return nil, err
	} else if ok {
		data, err := md.Marshal()
		if err != nil {
			return nil, err
		}
		if err := w.defaultFile(objectPath(x.commit, "commitmeta"), data); err != nil {
			return nil, err
		}
	}
	if err := w.metadataObject(x.c.RootMeta, ostree.ObjectDirMeta); err != nil {
		return nil, err
	}
	if err := w.structure(".", x.c.RootTree, true); err != nil {
		return nil, err
	}
	if !w.wroteVarTmp {
		if err := w.dir("var/tmp", 0, 0, 0o1777); err != nil {
			return nil, err
		}
	}
	if err := w.content(remainder); err != nil {
		return nil, err
	}
	return w.tw.finish(), nil
}

// structure writes a dirtree object and, for each subdirectory, its
// dirmeta object, its directory entry and its own structure.
func (w *layerWriter) structure(dir, tree string, isRoot bool) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if err := w.metadataObject(tree, ostree.ObjectDirTree); err != nil {
		return err
	}
	if dir == "./var/tmp" {
		w.wroteVarTmp = true
	}
	_, dirs, err := w.dirTree(tree)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := w.metadataObject(d.MetaChecksum, ostree.ObjectDirMeta); err != nil {
			return err
		}
		if isRoot && d.Name == "sysroot" {
			// The layers' own sysroot/ostree would collide with it.
			continue
		}
		sub := mapEtc(dir + "/" + d.Name)
		uid, gid, mode, err := w.readDirMeta(d.MetaChecksum)
		if err != nil {
			return err
		}
		if err := w.dir(sub, uid, gid, mode); err != nil {
			return err
		}
		if err := w.structure(sub, d.TreeChecksum, false); err != nil {
			return err
		}
	}
	return nil
}

// mapEtc writes usr/etc as etc, as ostree-ext does in its tar streams.
func mapEtc(p string) string {
	lead := ""
	if rest, ok := strings.CutPrefix(p, "./"); ok {
		lead, p = "./", rest
	}
	if p == "usr/etc" || strings.HasPrefix(p, "usr/etc/") {
		p = p[len("usr/"):]
	}
	return lead + p
}

func (x *exporter) readDirMeta(checksum string) (uid, gid, mode uint32, err error) {
	data, err := x.repo.ReadMetadataObject(checksum, ostree.ObjectDirMeta)
	if err != nil {
		return 0, 0, 0, err
	}
	uid, gid, mode, _, err = ostree.DecodeDirMeta(data)
	return uid, gid, mode & ostree.ModePermsMask, err
}

// chunkLayer writes a chunk layer: the skeleton, then the chunk's content.
func (x *exporter) chunkLayer(objects []*chunkObject) ([]byte, error) {
	w := x.newLayerWriter()
	if err := w.skeleton(); err != nil {
		return nil, err
	}
	if err := w.content(objects); err != nil {
		return nil, err
	}
	return w.tw.finish(), nil
}

// content writes each object, then a hard link to it at each of its paths.
func (w *layerWriter) content(objects []*chunkObject) error {
	for _, o := range objects {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		h, size, err := w.contentObject(o.checksum)
		if err != nil {
			return fmt.Errorf("content object %s: %w", o.checksum, err)
		}
		for _, p := range o.paths {
			p = mapEtc(strings.TrimPrefix(p, "/"))
			if w.spec.ParentDirs {
				if err := w.parents(p); err != nil {
					return err
				}
			}
			// Each link starts from the object's header, as in ostree-ext;
			// an empty file is written as one rather than linked.
			link := h
			link.setSize(0)
			if link.typ() != typeReg || size != 0 {
				link.setType(typeLink)
				if err := link.setLinkName(objectPath(o.checksum, "file")); err != nil {
					return err
				}
			}
			if err := w.tw.appendData(&link, p, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// parents writes the directories above p not yet written, outermost first,
// with their metadata from the commit.
func (w *layerWriter) parents(p string) error {
	parent := path.Dir(p)
	if parent == "." || w.wroteParent[parent] {
		return nil
	}
	if err := w.parents(parent); err != nil {
		return err
	}
	w.wroteParent[parent] = true
	inTree := parent
	if parent == "etc" || strings.HasPrefix(parent, "etc/") {
		inTree = "usr/" + parent
	}
	meta, ok := w.dirMeta[inTree]
	if !ok {
		return fmt.Errorf("no directory %q in the commit", inTree)
	}
	uid, gid, mode, err := w.readDirMeta(meta)
	if err != nil {
		return err
	}
	return w.dir(parent, uid, gid, mode)
}

// contentObject writes a content object with its xattrs and returns its
// header, which the hard links to it start from, and its size.
func (w *layerWriter) contentObject(checksum string) (tarHeader, int64, error) {
	obj, err := w.repo.OpenContent(checksum)
	if err != nil {
		return tarHeader{}, 0, err
	}
	defer obj.Close()
	xattrs, err := ostree.EncodeXattrs(obj.Meta.Xattrs)
	if err != nil {
		return tarHeader{}, 0, err
	}
	if err := w.xattrs(checksum, obj.Meta.Xattrs, xattrs); err != nil {
		return tarHeader{}, 0, err
	}
	h := newGNUHeader()
	h.setOwner(obj.Meta.UID, obj.Meta.GID)
	h.setMode(obj.Meta.Mode & ostree.ModePermsMask)
	p := objectPath(checksum, "file")
	if obj.Meta.Mode&ostree.ModeTypeMask == ostree.ModeSymlink {
		h.setType(typeSymlink)
		h.setSize(0)
		target := obj.Meta.Symlink
		if strings.Contains(target, "//") {
			// tar-rs would collapse the slashes; ostree-ext keeps them.
			if err := h.setLinkNameLiteral(target); err != nil {
				return tarHeader{}, 0, err
			}
			return h, 0, w.tw.appendData(&h, p, nil)
		}
		return h, 0, w.tw.appendLink(&h, p, target)
	}
	data, err := io.ReadAll(obj)
	if err != nil {
		return tarHeader{}, 0, err
	}
	h.setType(typeReg)
	h.setSize(int64(len(data)))
	return h, int64(len(data)), w.tw.appendData(&h, p, data)
}

// xattrs writes a content object's xattrs ahead of it, as the encoding
// says.
func (w *layerWriter) xattrs(checksum string, list []ostree.Xattr, data []byte) error {
	linkPath := objectPath(checksum, "file-xattrs-link")
	switch w.spec.XattrEncoding {
	case XattrsInline:
		if err := w.defaultFile(linkPath, data); err != nil {
			return err
		}
	case XattrsLinked, XattrsLinkedPAX:
		sum := sha256.Sum256(data)
		target := objectPath(hex.EncodeToString(sum[:]), "file-xattrs")
		if !w.wroteXattrs[target] {
			w.wroteXattrs[target] = true
			if err := w.defaultFile(target, data); err != nil {
				return err
			}
		}
		h := newGNUHeader()
		h.setType(typeLink)
		h.setOwner(0, 0)
		h.setMode(0o644)
		h.setSize(0)
		if err := w.tw.appendLink(&h, linkPath, target); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown xattr encoding %d", w.spec.XattrEncoding)
	}
	if w.spec.XattrEncoding == XattrsLinked {
		return nil
	}
	var records [][2]string
	for _, x := range list {
		if x.Name != "security.selinux" {
			records = append(records, [2]string{"SCHILY.xattr." + x.Name, string(x.Value)})
		}
	}
	w.tw.appendPAX(records)
	return nil
}

// image assembles the config and manifest around the layer tars.
func (x *exporter) image(tars [][]byte) (*Image, error) {
	created := x.c.Timestamp
	if !x.spec.Created.IsZero() {
		created = x.spec.Created
	}
	created = created.UTC().Truncate(time.Second)
	labels := map[string]string{CommitLabel: x.commit}
	if v, ok := x.c.Metadata.Lookup("ostree.bootable"); ok {
		b, _ := v.Value.(bool)
		labels[keys.BootableLabel] = fmt.Sprint(b)
		labels[keys.BootcLabel] = "1"
	}
	if v, ok, _ := x.c.Metadata.LookupString("ostree.linux"); ok {
		labels[keys.LinuxLabel] = v
	}
	if v, ok, _ := x.c.Metadata.LookupString("version"); ok {
		labels[VersionLabel] = v
	}
	for k, v := range x.spec.Labels {
		labels[k] = v
	}
	description := x.c.Subject
	if description == "" {
		description = "ostree export of commit " + x.commit
	}
	var layers []Blob
	var layerAnnotations []map[string]string
	var history []imgspecv1.History
	for i, data := range tars {
		b, err := compressLayer(data, x.spec.Compression, OCI)
		if err != nil {
			return nil, fmt.Errorf("updatecachetest: encapsulate: %w", err)
		}
		layers = append(layers, b)
		var annotations map[string]string
		by := description
		if i > 0 {
			ch := x.spec.Chunks[i-1]
			components := slices.Sorted(slices.Values(ch.Components))
			annotations = map[string]string{ComponentsAnnotation: strings.Join(components, ",")}
			by = ch.Name
		}
		layerAnnotations = append(layerAnnotations, annotations)
		history = append(history, imgspecv1.History{Created: &created, CreatedBy: by})
	}
	labels[FinalDiffIDLabel] = layers[len(layers)-1].DiffID.String()
	derivedSpec := ImageSpec{Created: created, Compression: x.spec.Compression}
	for i, l := range x.spec.Derived {
		b, err := buildLayer(l, derivedSpec)
		if err != nil {
			return nil, fmt.Errorf("updatecachetest: derived layer %d: %w", i, err)
		}
		layers = append(layers, b)
		history = append(history, imgspecv1.History{Created: &created, CreatedBy: fmt.Sprintf("derived layer %d", i)})
	}
	diffIDs := make([]digest.Digest, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.DiffID
	}
	cfg := imgspecv1.Image{
		Created:  &created,
		Platform: imgspecv1.Platform{OS: x.spec.OS, Architecture: x.spec.Architecture},
		Config:   imgspecv1.ImageConfig{Labels: labels},
		RootFS:   imgspecv1.RootFS{Type: "layers", DiffIDs: diffIDs},
		History:  history,
	}
	if cfg.OS == "" {
		cfg.OS = "linux"
	}
	if cfg.Architecture == "" {
		cfg.Architecture = runtime.GOARCH
	}
	return assemble(cfg, layers, layerAnnotations, labels, OCI)
}
