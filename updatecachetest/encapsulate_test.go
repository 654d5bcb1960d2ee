package updatecachetest

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
)

// sampleRepo writes SampleCommit into a new repository of the given mode.
func sampleRepo(t *testing.T, mode string) (repo, commit string) {
	t.Helper()
	repo = filepath.Join(t.TempDir(), "repo")
	if err := CreateRepo(repo, mode); err != nil {
		t.Fatal(err)
	}
	spec := SampleCommit("41.0")
	spec.DetachedMetadata = map[string]string{"signature": "sig"}
	commit, err := WriteCommit(context.Background(), repo, spec)
	if err != nil {
		t.Fatal(err)
	}
	return repo, commit
}

// TestWriteCommitMatchesOstree lays SampleCommit out on disk (as root:
// owners, setuid bits, security.* xattrs) and has `ostree commit
// --tree=dir` commit it: the root tree and dirmeta must be WriteCommit's,
// and `ostree fsck` must pass on WriteCommit's repository.
func TestWriteCommitMatchesOstree(t *testing.T) {
	testtool.Ostree(t)
	if os.Geteuid() != 0 {
		t.Skip("laying out owners and security.* xattrs on disk needs root")
	}
	ours, commit := sampleRepo(t, ModeArchive)
	testtool.RunOstree(t, "fsck", "--repo="+ours)
	spec := SampleCommit("41.0")
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range spec.Entries {
		p := filepath.Join(root, e.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case e.Link != "":
			err = os.Link(filepath.Join(root, e.Link), p)
		case e.Mode&fs.ModeDir != 0:
			if err = os.Mkdir(p, 0o700); errors.Is(err, fs.ErrExist) {
				err = nil
			}
		case e.Mode&fs.ModeSymlink != 0:
			err = os.Symlink(e.Target, p)
		default:
			err = os.WriteFile(p, e.Content, 0o600)
		}
		if err == nil && e.Link == "" {
			err = unix.Lchown(p, int(e.UID), int(e.GID))
		}
		if err == nil && e.Link == "" && e.Mode&fs.ModeSymlink == 0 {
			// os.Chmod maps fs.ModeSetuid and friends itself.
			err = os.Chmod(p, e.Mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)|defaultPerm(e.Mode))
		}
		for name, v := range e.Xattrs {
			if err == nil && e.Link == "" {
				err = unix.Lsetxattr(p, name, v, 0)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", e.Path, err)
		}
	}
	theirs := filepath.Join(t.TempDir(), "theirs")
	testtool.RunOstree(t, "init", "--repo="+theirs, "--mode=archive")
	testtool.RunOstree(t, "commit", "--repo="+theirs, "-b", "t", "--tree=dir="+root, "--no-bindings", "-s", "s")
	tree := func(repo, rev string) string {
		return testtool.RunOstree(t, "ls", "--repo="+repo, "-d", "-C", rev, "/")
	}
	if got, want := tree(ours, commit), tree(theirs, "t"); got != want {
		t.Errorf("root %s, ostree commit made %s\nours:\n%s\ntheirs:\n%s", got, want,
			testtool.RunOstree(t, "ls", "--repo="+ours, "-R", "-X", "-C", commit),
			testtool.RunOstree(t, "ls", "--repo="+theirs, "-R", "-X", "-C", "t"))
	}
}

// defaultPerm is what CommitEntry's zero permission bits stand for.
func defaultPerm(m fs.FileMode) fs.FileMode {
	switch {
	case m.Perm() != 0:
		return 0
	case m&fs.ModeDir != 0:
		return 0o755
	}
	return 0o644
}

// rawEntry is one entry of an uncompressed layer as archive/tar reads it.
type rawEntry struct {
	hdr  *tar.Header
	data []byte
}

func readRawLayer(t *testing.T, data []byte) []rawEntry {
	t.Helper()
	var entries []rawEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, rawEntry{hdr, body})
	}
}

// TestEncapsulateLayout checks an encapsulated image against ostree-ext's
// format: labels and annotations, layer order, the commit layer's entry
// order, where content objects and their checkout paths go, the three
// xattr encodings, and the header bytes of tar-rs.
func TestEncapsulateLayout(t *testing.T) {
	repo, commit := sampleRepo(t, ModeBareUser)
	chunks := []Chunk{
		{Name: "kernel", Components: []string{"kernel-modules", "kernel-core"}, Paths: []string{"usr/lib/modules"}},
		{Name: "gzip", Components: []string{"gzip"}, Paths: []string{"usr/bin/gunzip", "usr/etc"}},
	}
	for _, enc := range []XattrEncoding{XattrsInline, XattrsLinkedPAX, XattrsLinked} {
		img, err := Encapsulate(context.Background(), EncapsulateSpec{Repo: repo, Commit: commit, Chunks: chunks, XattrEncoding: enc,
			Compression: Uncompressed, Derived: []Layer{{Files: []File{{Path: "usr/bin/extra", Content: []byte("x")}}}}})
		if err != nil {
			t.Fatal(err)
		}
		var m imgspecv1.Manifest
		var cfg imgspecv1.Image
		if err := json.Unmarshal(img.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(img.Config.Data, &cfg); err != nil {
			t.Fatal(err)
		}
		labels := cfg.Config.Labels
		want := map[string]string{
			CommitLabel:       commit,
			FinalDiffIDLabel:  img.Layers[2].DiffID.String(),
			"ostree.bootable": "true", "containers.bootc": "1",
			"ostree.linux": SampleKernel, VersionLabel: "41.0",
		}
		for k, v := range want {
			if labels[k] != v || m.Annotations[k] != v {
				t.Errorf("label %s = %q, annotation %q, want %q", k, labels[k], m.Annotations[k], v)
			}
		}
		if len(m.Layers) != 4 || len(cfg.RootFS.DiffIDs) != 4 || len(cfg.History) != 4 {
			t.Fatalf("%d layers, %d diff_ids, %d history entries; want 4", len(m.Layers), len(cfg.RootFS.DiffIDs), len(cfg.History))
		}
		if got := m.Layers[1].Annotations[ComponentsAnnotation]; got != "kernel-core,kernel-modules" {
			t.Errorf("components of the kernel chunk: %q", got)
		}
		if cfg.Created == nil || cfg.Created.Unix() != SampleCommit("").Timestamp.Unix() {
			t.Errorf("created %v, want the commit's time", cfg.Created)
		}

		layers := make([][]rawEntry, 3)
		for i := range layers {
			layers[i] = readRawLayer(t, img.Layers[i].Data)
			checkTarRsHeaders(t, img.Layers[i].Data)
		}
		// The commit layer: the root, the skeleton, then the commit.
		names := func(es []rawEntry) []string {
			var n []string
			for _, e := range es {
				n = append(n, e.hdr.Name)
			}
			return n
		}
		cl := names(layers[0])
		skeleton := 4 + 256 + 8 + 1
		if cl[0] != "./" || cl[skeleton] != "sysroot/ostree/repo/config" ||
			cl[skeleton+1] != objectPath(commit, "commit") || cl[skeleton+2] != objectPath(commit, "commitmeta") {
			t.Errorf("commit layer starts %q ... %q", cl[:2], cl[skeleton:skeleton+3])
		}
		if !slices.Contains(cl, "etc/sudoers.d") || slices.Contains(cl, "usr/etc") || !slices.Contains(cl, "var/tmp") {
			t.Error("commit layer: etc, usr/etc or var/tmp wrong")
		}
		// Checkout paths: each file once in all layers, in its chunk.
		where := map[string]int{}
		for i, es := range layers {
			for _, e := range es {
				if !strings.HasPrefix(e.hdr.Name, "sysroot/") && e.hdr.Typeflag != tar.TypeDir {
					if _, dup := where[e.hdr.Name]; dup {
						t.Errorf("%s twice", e.hdr.Name)
					}
					where[e.hdr.Name] = i
				}
			}
		}
		for p, layer := range map[string]int{
			"usr/lib/modules/" + SampleKernel + "/vmlinuz": 1, "usr/bin/gzip": 2, "usr/bin/zcat": 2, "etc/passwd": 2,
			"usr/bin/bash": 0, "usr/lib/libbig.so.1": 0,
		} {
			if got, ok := where[p]; !ok || got != layer {
				t.Errorf("%s in layer %d (present %v), want %d", p, got, ok, layer)
			}
		}
		for _, es := range layers {
			checkContentEntries(t, es, enc)
		}
	}
}

// checkContentEntries checks every content object entry: preceded by its
// xattrs as the encoding says, PAX records for all but security.selinux,
// zero-size checkout paths as empty files, the others hard links.
func checkContentEntries(t *testing.T, es []rawEntry, enc XattrEncoding) {
	t.Helper()
	sets := map[string][]byte{}
	for i, e := range es {
		name := e.hdr.Name
		switch {
		case strings.HasSuffix(name, ".file-xattrs"):
			if enc == XattrsInline {
				t.Errorf("%s in the inline encoding", name)
			}
			sets[name] = e.data
		case strings.HasSuffix(name, ".file"):
			link := es[i-1]
			if !strings.HasSuffix(link.hdr.Name, ".file-xattrs-link") || strings.TrimSuffix(link.hdr.Name, "-xattrs-link") != name {
				t.Fatalf("%s after %s", name, link.hdr.Name)
			}
			xattrs := link.data
			if enc == XattrsInline {
				if link.hdr.Typeflag != tar.TypeReg {
					t.Errorf("%s is not a regular file", link.hdr.Name)
				}
			} else {
				if link.hdr.Typeflag != tar.TypeLink {
					t.Errorf("%s is not a hard link", link.hdr.Name)
				}
				xattrs = sets[link.hdr.Linkname]
			}
			decoded, err := ostree.DecodeXattrs(xattrs)
			if err != nil {
				t.Fatal(err)
			}
			wantPAX := 0
			for _, x := range decoded {
				v, ok := e.hdr.PAXRecords["SCHILY.xattr."+x.Name]
				if x.Name != "security.selinux" && enc != XattrsLinked {
					wantPAX++
					if !ok || v != string(x.Value) {
						t.Errorf("%s: PAX record of %s is %q", name, x.Name, v)
					}
				}
			}
			if len(e.hdr.PAXRecords) != wantPAX {
				t.Errorf("%s: PAX records %q, want %d", name, e.hdr.PAXRecords, wantPAX)
			}
			if j := i + 1; j < len(es) && !strings.HasPrefix(es[j].hdr.Name, "sysroot/") {
				next := es[j].hdr
				zero := e.hdr.Typeflag == tar.TypeReg && e.hdr.Size == 0
				if zero && next.Typeflag != tar.TypeReg || !zero && (next.Typeflag != tar.TypeLink || next.Linkname != name) {
					t.Errorf("checkout path %s of %s: type %q link %q", next.Name, name, next.Typeflag, next.Linkname)
				}
			}
		}
	}
}

// checkTarRsHeaders walks the raw header blocks: GNU headers (magic
// "ustar  ") with an mtime field of eleven zeros and a NUL, PAX headers
// in UStar format without a name, numbers NUL-terminated octal.
func checkTarRsHeaders(t *testing.T, data []byte) {
	t.Helper()
	longNames := 0
	for off := 0; off+512 <= len(data); {
		h := data[off : off+512]
		if bytes.Equal(h, make([]byte, 512)) {
			break
		}
		typ, magic := h[156], string(h[257:265])
		if string(h[136:148]) != "00000000000\x00" {
			t.Fatalf("header at %d: mtime field %q", off, h[136:148])
		}
		switch {
		case typ == 'x':
			if magic != "ustar\x0000" || h[0] != 0 {
				t.Errorf("PAX header at %d: magic %q name %q", off, magic, h[:8])
			}
		case magic != "ustar  \x00":
			t.Errorf("header at %d (%q): magic %q", off, typ, magic)
		}
		if typ == 'L' {
			longNames++
			if string(h[:14]) != "././@LongLink\x00" {
				t.Errorf("long-name record at %d named %q", off, h[:14])
			}
		}
		if h[107] != 0 || h[135] != 0 || h[155] != 0 {
			t.Errorf("header at %d: fields not NUL-terminated", off)
		}
		size := int64(0)
		for _, c := range h[124:135] {
			size = size*8 + int64(c-'0')
		}
		off += 512 + int((size+511)/512*512)
	}
	if longNames == 0 {
		t.Error("no long-name records; the sample has names over 100 bytes")
	}
}

// TestEncapsulatePushSkopeo pushes an encapsulated image and writes it as
// an OCI layout; skopeo reads both, with the labels.
func TestEncapsulatePushSkopeo(t *testing.T) {
	repo, commit := sampleRepo(t, ModeArchive)
	img, err := Encapsulate(context.Background(), EncapsulateSpec{Repo: repo, Commit: commit, Chunks: []Chunk{{Name: "k", Paths: []string{"usr/lib/modules"}}}})
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(t)
	if _, err := reg.Push(context.Background(), "os/encap", "latest", img); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(t.TempDir(), "layout")
	if err := WriteLayout(layout, "latest", img); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"docker://" + reg.Host() + "/os/encap:latest", "oci:" + layout + ":latest"} {
		var out struct{ Labels map[string]string }
		if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", "--no-creds", ref), &out); err != nil {
			t.Fatal(err)
		}
		if out.Labels[CommitLabel] != commit {
			t.Errorf("%s: skopeo sees labels %q", ref, out.Labels)
		}
		skopeo(t, "copy", "--src-tls-verify=false", "--src-no-creds", ref, "oci:"+filepath.Join(t.TempDir(), "copy")+":x")
	}
}
