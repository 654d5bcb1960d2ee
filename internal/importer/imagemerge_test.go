package importer

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// derivedLayers are what a Containerfile build on the sample image adds:
// a new program, a changed one, a deleted one (whiteout), a directory's
// metadata changed (which the merge must not take), an opaque directory,
// and the empty hostname and resolv.conf buildah leaves in /etc (only the
// empty one goes).
var derivedLayers = []updatecachetest.Layer{
	{Files: []updatecachetest.File{
		{Path: "usr/bin", Mode: fs.ModeDir | 0o700},
		{Path: "usr/bin/extra", Content: []byte("extra tool\n"), Mode: 0o755},
		{Path: "usr/bin/bash", Content: []byte("#!new bash\n"), Mode: 0o755},
		{Path: "usr/bin/.wh.gzip"},
		{Path: "usr/share/polkit-1/rules.d/.wh..wh..opq"},
		{Path: "usr/share/polkit-1/rules.d/90-local.rules", Content: []byte("// local\n")},
		{Path: "etc/hostname"},
		{Path: "etc/resolv.conf", Content: []byte("nameserver 192.0.2.1\n")},
	}},
	{Files: []updatecachetest.File{
		{Path: "usr/share/newdir", Mode: fs.ModeDir | 0o750},
		{Path: "usr/share/newdir/f", Content: []byte("f\n")},
		{Path: "usr/bin/.wh.extra"},
		{Path: "usr/bin/extra", Content: []byte("extra tool, again\n"), Mode: 0o700},
	}},
}

// lsEntry is a line of `ostree ls -R -X -C`, keyed by path; a directory's
// dirtree checksum is left out, since it changes with the content.
func lsEntries(t *testing.T, r *ostree.Repo, rev string) map[string]string {
	t.Helper()
	entries := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(lsTree(t, r, rev)), "\n") {
		f := strings.Fields(line)
		path := f[len(f)-1]
		if i := slices.Index(f, "->"); i > 0 {
			path = f[i-1]
		}
		if strings.HasPrefix(line, "d") {
			f = slices.Delete(f, 4, 5)
		}
		entries[path] = strings.Join(f, " ")
	}
	return entries
}

// expectedMerge is the merge of a base listing and layer listings, by the
// OCI rules as ostree-ext's union checkout applies them: whiteouts delete
// from the layers below, a directory keeps its lowest metadata unless an
// opaque whiteout empties it, files replace; then the empty
// /usr/etc/hostname and resolv.conf go.
func expectedMerge(base map[string]string, layers ...map[string]string) map[string]string {
	want := maps.Clone(base)
	under := func(dir string) func(string) bool {
		return func(p string) bool { return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") }
	}
	for _, layer := range layers {
		for p := range layer {
			dir, name := filepath.Split(p)
			switch {
			case name == ".wh..wh..opq":
				// The directory is made anew, with this layer's metadata.
				del := under(strings.TrimSuffix(dir, "/"))
				for q := range want {
					if del(q) {
						delete(want, q)
					}
				}
			case strings.HasPrefix(name, ".wh."):
				del := under(dir + strings.TrimPrefix(name, ".wh."))
				for q := range want {
					if del(q) {
						delete(want, q)
					}
				}
			}
		}
		for p, line := range layer {
			if strings.HasPrefix(filepath.Base(p), ".wh.") {
				continue
			}
			if old, ok := want[p]; ok && strings.HasPrefix(old, "d") && strings.HasPrefix(line, "d") {
				continue
			}
			want[p] = line
		}
	}
	for _, p := range []string{"/usr/etc/hostname", "/usr/etc/resolv.conf"} {
		if f := strings.Fields(want[p]); len(f) > 3 && f[0][0] == '-' && f[3] == "0" {
			delete(want, p)
		}
	}
	return want
}

// TestImageMergeDerived imports the sample image with derived layers into
// each mode and requires the merge commit to list exactly as
// expectedMerge of the listings of the base and layer commits (the sample
// ships no SELinux policy, so nothing is relabelled), with the base as
// parent, the given metadata and a clean fsck.
func TestImageMergeDerived(t *testing.T) {
	testtool.Ostree(t)
	src, commit := sourceCommit(t, ostree.ModeArchive, "40.4")
	img := encapsulate(t, src, commit, updatecachetest.EncapsulateSpec{Chunks: sampleChunks, Derived: derivedLayers})
	for _, mode := range modes(t) {
		t.Run(string(mode), func(t *testing.T) {
			r := newRepo(t, mode)
			got := importImage(t, r, img, commit, len(sampleChunks))
			var md gvariant.VarDict
			md.Set("ostree.manifest-digest", gvariant.NewString(img.ManifestDigest.String()))
			merge, err := WriteImageMergeCommit(context.Background(), r, "image", ImageMergeOptions{Base: commit, Layers: got.derived, Metadata: md})
			if err != nil {
				t.Fatal(err)
			}
			testtool.RunOstree(t, "fsck", "--repo="+r.Path())
			var layers []map[string]string
			for _, l := range got.derived {
				layers = append(layers, lsEntries(t, r, l))
			}
			want := expectedMerge(lsEntries(t, r, commit), layers...)
			have := lsEntries(t, r, merge)
			for p, line := range want {
				if have[p] != line {
					t.Errorf("%s: %q, want %q", p, have[p], line)
				}
			}
			for p, line := range have {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: %q, not expected", p, line)
				}
			}
			if _, ok := have["/usr/etc/resolv.conf"]; !ok || have["/usr/etc/hostname"] != "" {
				t.Error("the empty hostname must go, the non-empty resolv.conf stay")
			}
			c, err := r.ReadCommit(merge)
			if err != nil {
				t.Fatal(err)
			}
			if v, _, _ := c.Metadata.LookupString("ostree.manifest-digest"); c.Parent != commit || v != img.ManifestDigest.String() {
				t.Errorf("parent %s, metadata %v", c.Parent, c.Metadata)
			}
		})
	}
}

// TestImageMergeErrors: nothing to merge, a missing base and a missing
// layer are errors that set no ref.
func TestImageMergeErrors(t *testing.T) {
	r, commit := sourceCommit(t, ostree.ModeArchive, "40.5")
	layer := importEntries(t, r, []ent{reg("usr/x", 0o644, "x")}).Commit
	for _, tc := range []struct {
		opts ImageMergeOptions
		want error
	}{
		{ImageMergeOptions{}, ErrInvalidOptions},
		{ImageMergeOptions{Base: strings.Repeat("0", 64)}, ostree.ErrRefNotFound},
		{ImageMergeOptions{Base: commit, Layers: []string{layer, "ostree/container/blob/missing"}}, ostree.ErrRefNotFound},
	} {
		if _, err := WriteImageMergeCommit(context.Background(), r, "image", tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.opts, err, tc.want)
		}
	}
	if _, err := r.ResolveRef("image"); !errors.Is(err, ostree.ErrRefNotFound) {
		t.Errorf("ref set after failures: %v", err)
	}
	// Plain images merge without a base, no parent.
	merge, err := WriteImageMergeCommit(context.Background(), r, "image", ImageMergeOptions{Layers: []string{layer}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := r.ReadCommit(merge); err != nil || c.Parent != "" {
		t.Errorf("plain image: parent %q, %v", c.Parent, err)
	}
}

// TestImageDeploy imports the sample image with its derived layers into a
// sysroot made by `ostree admin init-fs` and deploys the merge commit with
// `ostree admin deploy`: the deployment has the image's programs, the
// derived layers' changes, and the image's /etc.
func TestImageDeploy(t *testing.T) {
	testtool.Ostree(t)
	if os.Geteuid() != 0 {
		t.Skip("a sysroot's repository is bare: needs root")
	}
	src, commit := sourceCommit(t, ostree.ModeArchive, "40.6")
	img := encapsulate(t, src, commit, updatecachetest.EncapsulateSpec{Chunks: sampleChunks, Derived: derivedLayers})
	sysroot := t.TempDir()
	testtool.RunOstree(t, "admin", "init-fs", sysroot)
	r, err := ostree.Open(filepath.Join(sysroot, "ostree", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	got := importImage(t, r, img, commit, len(sampleChunks))
	ref, err := ostree.ImageRefName("oci:/images/sample:latest")
	if err != nil {
		t.Fatal(err)
	}
	merge, err := WriteImageMergeCommit(context.Background(), r, ref, ImageMergeOptions{Base: commit, Layers: got.derived})
	if err != nil {
		t.Fatal(err)
	}
	deploy := testtool.AdminDeploy(t, sysroot, "sample", ref)
	if !strings.HasSuffix(deploy, merge+".0") {
		t.Errorf("deployed %s, want the merge commit %s", deploy, merge)
	}
	for p, want := range map[string]string{
		"usr/bin/bash":       "#!new bash\n",
		"usr/bin/extra":      "extra tool, again\n",
		"usr/lib/os-release": "NAME=Sample OS\nID=sample\nVERSION_ID=40.6\n",
		"etc/passwd":         "root:x:0:0:root:/root:/bin/bash\n",
		"etc/resolv.conf":    "nameserver 192.0.2.1\n",
	} {
		if data, err := os.ReadFile(filepath.Join(deploy, p)); err != nil || string(data) != want {
			t.Errorf("deployed %s: %q, %v; want %q", p, data, err, want)
		}
	}
	for _, gone := range []string{"usr/bin/gzip", "etc/hostname"} {
		if _, err := os.Lstat(filepath.Join(deploy, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("deployed %s: %v, want it gone", gone, err)
		}
	}
	if st, err := os.Stat(filepath.Join(deploy, "usr/bin/passwd")); err != nil || st.Mode()&fs.ModeSetuid == 0 {
		t.Errorf("deployed usr/bin/passwd: %v, %v; want setuid", st, err)
	}
}
