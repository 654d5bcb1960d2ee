package registry_test

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/directory"
	ociarchive "go.podman.io/image/v5/oci/archive"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/updatecachetest"
)

// hugeSize is the size of the oversized files below, sparse on disk; the
// cap is set to a sixteenth of it.
const (
	hugeSize = 64 << 20
	smallCap = hugeSize / 16
)

// grow makes the file at p hugeSize bytes long (its tail a hole).
func grow(t *testing.T, p string) {
	t.Helper()
	if err := os.Truncate(p, hugeSize); err != nil {
		t.Fatal(err)
	}
}

// rewriteIndex changes the one descriptor of a layout's index.json.
func rewriteIndex(t *testing.T, dir string, change func(*imgspecv1.Descriptor)) {
	t.Helper()
	p := filepath.Join(dir, "index.json")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var index imgspecv1.Index
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	change(&index.Manifests[0])
	if data, err = json.Marshal(index); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tarDir writes dir's regular files into a new tar file, as an
// oci-archive: holds a layout.
func tarDir(t *testing.T, dir, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestLocalManifestCap: an oversized manifest (or index.json) in a local
// image is refused from its size, never read into memory: each case reads
// a file sixteen times the cap and may allocate no more than the cap.
func TestLocalManifestCap(t *testing.T) {
	img := osImage(t, "9.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	idx := multiArch(t, "9.0", updatecachetest.OCI)
	layoutOf := func(t *testing.T, a updatecachetest.Artifact) string {
		dir := filepath.Join(t.TempDir(), "layout")
		if err := updatecachetest.WriteLayout(dir, "latest", a); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	ociRef := func(t *testing.T, dir string) types.ImageReference {
		ref, err := layout.ParseReference(dir + ":latest")
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	for _, tc := range []struct {
		name string
		ref  func(t *testing.T) types.ImageReference
	}{
		{"oci: top manifest longer than index.json says", func(t *testing.T) types.ImageReference {
			dir := layoutOf(t, img)
			grow(t, filepath.Join(dir, "blobs", "sha256", img.ManifestDigest.Encoded()))
			return ociRef(t, dir)
		}},
		{"oci: index.json says the top manifest is huge", func(t *testing.T) types.ImageReference {
			dir := layoutOf(t, img)
			grow(t, filepath.Join(dir, "blobs", "sha256", img.ManifestDigest.Encoded()))
			rewriteIndex(t, dir, func(d *imgspecv1.Descriptor) { d.Size = hugeSize })
			return ociRef(t, dir)
		}},
		{"oci: instance manifest longer than its index entry says", func(t *testing.T) types.ImageReference {
			dir := layoutOf(t, idx)
			grow(t, filepath.Join(dir, "blobs", "sha256", idx.Images[0].ManifestDigest.Encoded()))
			return ociRef(t, dir)
		}},
		{"oci: huge index.json", func(t *testing.T) types.ImageReference {
			dir := layoutOf(t, img)
			grow(t, filepath.Join(dir, "index.json"))
			return ociRef(t, dir)
		}},
		{"oci-archive: top manifest longer than index.json says", func(t *testing.T) types.ImageReference {
			dir := layoutOf(t, img)
			grow(t, filepath.Join(dir, "blobs", "sha256", img.ManifestDigest.Encoded()))
			file := filepath.Join(t.TempDir(), "image.tar")
			tarDir(t, dir, file)
			ref, err := ociarchive.ParseReference(file + ":latest")
			if err != nil {
				t.Fatal(err)
			}
			return ref
		}},
		{"dir: huge manifest.json", func(t *testing.T) types.ImageReference {
			dir := t.TempDir()
			p := filepath.Join(dir, "manifest.json")
			if err := os.WriteFile(p, img.Manifest, 0o644); err != nil {
				t.Fatal(err)
			}
			grow(t, p)
			ref, err := directory.NewReference(dir)
			if err != nil {
				t.Fatal(err)
			}
			return ref
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := tc.ref(t)
			c := registry.New(registry.Options{Platform: &amd64, MaxManifestSize: smallCap})
			ctx := ctxFor(t, 30*time.Second)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := readImage(ctx, checkPath, c, ref, "")
			runtime.ReadMemStats(&after)
			if !errors.Is(err, registry.ErrTooLarge) {
				t.Fatalf("got %v, want ErrTooLarge", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > smallCap {
				t.Errorf("allocated %d bytes refusing a %d-byte file with a cap of %d", alloc, hugeSize, smallCap)
			}
			t.Log(err)
		})
	}
}
