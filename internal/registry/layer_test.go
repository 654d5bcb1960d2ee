package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/oci/layout"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/updatecachetest"
)

// noise returns n deterministic incompressible bytes.
func noise(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	rand.NewChaCha8(s).Read(b)
	return b
}

// bigImage builds an image whose layers range from tiny to a few MiB, so
// that streaming crosses many reads and the registries' buffers.
func bigImage(t testing.TB, version string, p imgspecv1.Platform) *updatecachetest.Image {
	t.Helper()
	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		Version: version, OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
		Created: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		Layers: []updatecachetest.Layer{
			{Files: []updatecachetest.File{{Path: "usr", Mode: fs.ModeDir | 0o755}}},
			{Files: []updatecachetest.File{{Path: "usr/lib/big", Content: noise(1, 3<<20)}}},
			{Files: []updatecachetest.File{{Path: "usr/lib/os-release", Content: []byte("VERSION_ID=" + version + "\n")}}},
			{Files: []updatecachetest.File{{Path: "usr/share/blob", Content: noise(2, 300<<10)}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// readLayer opens and reads one layer whole; an error from either step is
// returned.
func readLayer(ctx context.Context, src *registry.Source, desc imgspecv1.Descriptor) ([]byte, error) {
	rc, err := src.Layer(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestLayers streams every layer of the chosen platform's image, several
// readers at once over one Source, and checks the bytes and that the whole
// pull cost one ping: Open, Image and the layers share one session.
func TestLayers(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		want := bigImage(t, "1.0", arm64)
		idx, err := updatecachetest.NewIndex(bigImage(t, "1.0", amd64), want)
		if err != nil {
			t.Fatal(err)
		}
		e.push(t, "layers/os", "stable", idx)
		c := e.client(registry.Options{Platform: &arm64})
		ctx := ctxFor(t, 60*time.Second)

		src, err := c.Open(ctx, e.ref(t, "layers/os", "stable"), "")
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if src.TopDigest() != idx.ManifestDigest {
			t.Errorf("TopDigest %s, want %s", src.TopDigest(), idx.ManifestDigest)
		}
		img, err := src.Image(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if img.ManifestDigest != want.ManifestDigest || len(img.Layers) != len(want.Layers) {
			t.Fatalf("image %s with %d layers, want %s with %d", img.ManifestDigest, len(img.Layers), want.ManifestDigest, len(want.Layers))
		}

		// Every layer twice, all at once.
		const readers = 2
		var wg sync.WaitGroup
		errs := make(chan error, readers*len(img.Layers))
		for range readers {
			for i, desc := range img.Layers {
				wg.Go(func() {
					got, err := readLayer(ctx, src, desc)
					switch {
					case err != nil:
						errs <- fmt.Errorf("layer %d: %w", i, err)
					case !bytes.Equal(got, want.Layers[i].Data):
						errs <- fmt.Errorf("layer %d: %d bytes differ from the %d pushed", i, len(got), len(want.Layers[i].Data))
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}

		n := e.reg.Counts()
		if n.Ping != 1 || n.Token != 0 || n.ManifestHEAD != 0 || n.ManifestGET != 2 || n.BlobGET != 1+readers*len(img.Layers) {
			t.Errorf("want 1 ping, 2 manifest GETs, 1 config GET and %d layer GETs; %v", readers*len(img.Layers), n)
		}
		for i, l := range want.Layers {
			if n.BlobGETs(l.Digest) != readers {
				t.Errorf("layer %d fetched %d times, want %d", i, n.BlobGETs(l.Digest), readers)
			}
		}
		t.Logf("pull of %d layers (%d readers each): %v", len(img.Layers), readers, n)
	})
}

// TestOpenPins: a Source opened on a tag keeps reading the image the tag
// named when it was opened, even after the tag moves.
func TestOpenPins(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		v1 := osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
		v2 := osImage(t, "2.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
		e.push(t, "pins/os", "stable", v1)
		ctx := ctxFor(t, 30*time.Second)
		src, err := e.client(registry.Options{}).Open(ctx, e.ref(t, "pins/os", "stable"), "")
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		e.push(t, "pins/os", "stable", v2)
		img, err := src.Image(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if img.TopDigest != v1.ManifestDigest || img.ConfigDigest != v1.ConfigDigest() {
			t.Errorf("read %s, want the image the tag named at Open, %s", img.TopDigest, v1.ManifestDigest)
		}
		if n := e.reg.Counts(); n.ManifestGET != 0 || n.Ping != 0 {
			t.Errorf("Image fetched the top manifest again: %v", n)
		}
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := src.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// TestLayerFaults: a layer blob that is missing, refused, slow, corrupted,
// cut short or too long gives its sentinel, from Layer or from reading.
func TestLayerFaults(t *testing.T) {
	lie := digest.FromString("not a layer")
	cases := []struct {
		name    string
		fault   func(layer updatecachetest.Blob) updatecachetest.Fault
		desc    func(layer updatecachetest.Blob) imgspecv1.Descriptor // nil: the layer's
		timeout time.Duration
		want    error
		also    error
	}{
		{name: "corrupted", fault: func(updatecachetest.Blob) updatecachetest.Fault { return updatecachetest.Fault{Corrupt: true} },
			want: registry.ErrDigestMismatch},
		{name: "truncated", fault: func(updatecachetest.Blob) updatecachetest.Fault { return updatecachetest.Fault{Truncate: true} },
			want: registry.ErrMalformed},
		{name: "longer than its descriptor", fault: func(updatecachetest.Blob) updatecachetest.Fault { return updatecachetest.Fault{Pad: 1} },
			want: registry.ErrDigestMismatch},
		{name: "shorter than its descriptor", fault: func(l updatecachetest.Blob) updatecachetest.Fault {
			return updatecachetest.Fault{ReplaceBody: l.Data[:len(l.Data)-1]}
		}, want: registry.ErrDigestMismatch},
		{name: "404 BLOB_UNKNOWN", fault: func(updatecachetest.Blob) updatecachetest.Fault {
			return updatecachetest.Fault{Status: 404, Body: updatecachetest.ErrorBody("BLOB_UNKNOWN", "blob unknown to registry")}
		}, want: registry.ErrManifestUnknown},
		{name: "404 without a body", fault: func(updatecachetest.Blob) updatecachetest.Fault { return updatecachetest.Fault{Status: 404} },
			want: registry.ErrManifestUnknown},
		{name: "403", fault: func(updatecachetest.Blob) updatecachetest.Fault { return updatecachetest.Fault{Status: 403} },
			want: registry.ErrUnauthorized},
		{name: "503", fault: func(updatecachetest.Blob) updatecachetest.Fault { return updatecachetest.Fault{Status: 503} },
			want: registry.ErrUnavailable},
		{name: "slower than the deadline", fault: func(updatecachetest.Blob) updatecachetest.Fault { return updatecachetest.Fault{Delay: time.Minute} },
			timeout: 500 * time.Millisecond, want: registry.ErrUnavailable, also: context.DeadlineExceeded},
		{name: "registry serves other bytes for a digest", fault: func(l updatecachetest.Blob) updatecachetest.Fault {
			return updatecachetest.Fault{Path: lie.Encoded(), Status: 200, Body: l.Data}
		}, desc: func(l updatecachetest.Blob) imgspecv1.Descriptor {
			return imgspecv1.Descriptor{MediaType: l.MediaType, Digest: lie, Size: l.Size}
		}, want: registry.ErrDigestMismatch},
		{name: "invalid descriptor digest", desc: func(l updatecachetest.Blob) imgspecv1.Descriptor {
			return imgspecv1.Descriptor{Digest: "sha256:zz", Size: l.Size}
		}, want: registry.ErrMalformed},
		{name: "negative descriptor size", desc: func(l updatecachetest.Blob) imgspecv1.Descriptor {
			return imgspecv1.Descriptor{Digest: l.Digest, Size: -1}
		}, want: registry.ErrMalformed},
	}
	forEachEnv(t, func(t *testing.T, e *env) {
		img := bigImage(t, "3.0", amd64)
		e.push(t, "layerfaults/os", "stable", img)
		layer := img.Layers[1] // the 3 MiB one
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				timeout := tc.timeout
				if timeout == 0 {
					timeout = 20 * time.Second
				}
				ctx := ctxFor(t, timeout)
				src, err := e.client(registry.Options{}).Open(ctxFor(t, 20*time.Second), e.ref(t, "layerfaults/os", "stable"), img.ManifestDigest)
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				if tc.fault != nil {
					f := tc.fault(layer)
					f.Method, f.Kind = http.MethodGet, updatecachetest.KindBlob
					if f.Path == "" {
						f.Path = layer.Digest.Encoded()
					}
					e.reg.AddFault(f)
					defer e.reg.ClearFaults()
				}
				desc := imgspecv1.Descriptor{MediaType: layer.MediaType, Digest: layer.Digest, Size: layer.Size}
				if tc.desc != nil {
					desc = tc.desc(layer)
				}
				start := time.Now()
				got, err := readLayer(ctx, src, desc)
				if !errors.Is(err, tc.want) || (tc.also != nil && !errors.Is(err, tc.also)) {
					t.Fatalf("got %d bytes, %v; want %v", len(got), err, tc.want)
				}
				if int64(len(got)) >= layer.Size {
					t.Errorf("the whole %d bytes were returned before the error", len(got))
				}
				if elapsed := time.Since(start); elapsed > timeout+time.Second {
					t.Errorf("took %v, beyond the %v deadline", elapsed, timeout)
				}
				t.Logf("%v", err)
			})
		}
	})
}

// TestLayerLocalLayout streams layers from an oci: layout, where a blob
// file damaged on disk is caught like a corrupted download.
func TestLayerLocalLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	img := bigImage(t, "4.0", amd64)
	if err := updatecachetest.WriteLayout(dir, "latest", img); err != nil {
		t.Fatal(err)
	}
	ref, err := layout.ParseReference(dir + ":latest")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 30*time.Second)
	src, err := registry.New(registry.Options{Platform: &amd64}).Open(ctx, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got, err := src.Image(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, desc := range got.Layers {
		data, err := readLayer(ctx, src, desc)
		if err != nil || !bytes.Equal(data, img.Layers[i].Data) {
			t.Fatalf("layer %d: %d bytes, %v", i, len(data), err)
		}
	}

	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 1; return b }},
		{"appended byte", func(b []byte) []byte { return append(bytes.Clone(b), 0) }},
		{"cut short", func(b []byte) []byte { return b[:len(b)-1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := img.Layers[3]
			path := filepath.Join(dir, "blobs", l.Digest.Algorithm().String(), l.Digest.Encoded())
			if err := os.WriteFile(path, tc.damage(l.Data), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := readLayer(ctx, src, got.Layers[3]); !errors.Is(err, registry.ErrDigestMismatch) {
				t.Errorf("got %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// BenchmarkLayer streams a 16 MiB layer from the in-process registry
// through the verifying reader.
func BenchmarkLayer(b *testing.B) {
	reg := updatecachetest.NewRegistry(b)
	sys, err := updatecachetest.SystemContext(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{
		OS: "linux", Architecture: "amd64", Compression: updatecachetest.Uncompressed,
		Layers: []updatecachetest.Layer{{Files: []updatecachetest.File{{Path: "big", Content: noise(3, 16<<20)}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := reg.Push(ctx, "bench/os", "stable", img); err != nil {
		b.Fatal(err)
	}
	ref, err := docker.ParseReference(strings.TrimPrefix(reg.Ref("bench/os", "stable"), "docker:"))
	if err != nil {
		b.Fatal(err)
	}
	src, err := registry.New(registry.Options{SystemContext: sys}).Open(ctx, ref, "")
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	l := img.Layers[0]
	desc := imgspecv1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
	b.SetBytes(l.Size)
	for b.Loop() {
		rc, err := src.Layer(ctx, desc)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}
