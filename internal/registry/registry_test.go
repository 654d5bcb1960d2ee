package registry_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

func TestCheck(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		img := osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
		idx := multiArch(t, "1.0", updatecachetest.OCI)
		e.push(t, "digest/single", "stable", img)
		e.push(t, "digest/multi", "stable", idx)
		c := e.client(registry.Options{})
		ctx := ctxFor(t, 30*time.Second)

		for _, tc := range []struct {
			repo string
			want digest.Digest
		}{
			{"digest/single", img.ManifestDigest},
			{"digest/multi", idx.ManifestDigest}, // the index, not an instance
		} {
			e.reg.Reset()
			ch, err := c.Check(ctx, e.ref(t, tc.repo, "stable"))
			if err != nil {
				t.Fatalf("%s: %v", tc.repo, err)
			}
			ch.Close()
			if ch.TopDigest() != tc.want {
				t.Errorf("%s: digest %s, want %s", tc.repo, ch.TopDigest(), tc.want)
			}
			if want := e.reg.Host() + "/" + tc.repo + ":stable"; ch.Endpoint() != want {
				t.Errorf("%s: endpoint %q, want %q", tc.repo, ch.Endpoint(), want)
			}
			if n := e.reg.Counts(); n.Ping != 1 || n.ManifestHEAD != 1 || n.Total != 2 {
				t.Errorf("%s: want exactly 1 ping and 1 manifest HEAD; %v", tc.repo, n)
			}
		}

		// A digest-pinned reference needs no request.
		e.reg.Reset()
		got, err := digestOf(ctx, c, e.ref(t, "digest/single", img.ManifestDigest.String()))
		if err != nil || got != img.ManifestDigest {
			t.Errorf("pinned: %s, %v; want %s", got, err, img.ManifestDigest)
		}
		if n := e.reg.Counts(); n.Total != 0 {
			t.Errorf("pinned reference sent requests: %v", n)
		}

		_, err = digestOf(ctx, c, e.ref(t, "digest/single", "no-such-tag"))
		if !errors.Is(err, registry.ErrManifestUnknown) {
			t.Errorf("missing tag: %v, want ErrManifestUnknown", err)
		}
	})
}

// TestCheckRequests counts a whole check of a new single-platform image:
// one session, so exactly ping, HEAD, manifest GET and config GET; the
// HEAD's digest decides what the GET asks for. Before Check, Digest and
// Open made two sessions (two pings, five requests).
func TestCheckRequests(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		img := osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
		e.push(t, "requests/os", "stable", img)
		ctx := ctxFor(t, 30*time.Second)
		ch, err := e.client(registry.Options{}).Check(ctx, e.ref(t, "requests/os", "stable"))
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		got, err := ch.Image(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.TopDigest != img.ManifestDigest || got.ConfigDigest != img.ConfigDigest() {
			t.Errorf("read %s config %s, want %s config %s", got.TopDigest, got.ConfigDigest, img.ManifestDigest, img.ConfigDigest())
		}
		want := []string{
			"GET /v2/",
			"HEAD /v2/requests/os/manifests/stable",
			"GET /v2/requests/os/manifests/" + img.ManifestDigest.String(),
			"GET /v2/requests/os/blobs/" + img.ConfigDigest().String(),
		}
		if n := e.reg.Counts(); !slices.Equal(n.Log, want) {
			t.Errorf("requests %q, want %q", n.Log, want)
		}
	})
}

func TestFetch(t *testing.T) {
	oci, docker := updatecachetest.OCI, updatecachetest.Docker
	gz, zst, raw := updatecachetest.Gzip, updatecachetest.Zstd, updatecachetest.Uncompressed
	single := func(f updatecachetest.Format, c updatecachetest.Compression) func(t *testing.T) (updatecachetest.Artifact, *updatecachetest.Image) {
		return func(t *testing.T) (updatecachetest.Artifact, *updatecachetest.Image) {
			img := osImage(t, "2.0", amd64, f, c)
			return img, img
		}
	}
	multi := func(f updatecachetest.Format, want imgspecv1.Platform) func(t *testing.T) (updatecachetest.Artifact, *updatecachetest.Image) {
		return func(t *testing.T) (updatecachetest.Artifact, *updatecachetest.Image) {
			idx := multiArch(t, "2.0", f)
			for _, img := range idx.Images {
				if img.Platform.Architecture == want.Architecture && img.Platform.Variant == want.Variant {
					return idx, img
				}
			}
			t.Fatalf("no %v in index", want)
			return nil, nil
		}
	}
	cases := []struct {
		name     string
		build    func(t *testing.T) (updatecachetest.Artifact, *updatecachetest.Image)
		platform imgspecv1.Platform
		topType  string
	}{
		{"oci gzip", single(oci, gz), amd64, imgspecv1.MediaTypeImageManifest},
		{"oci zstd", single(oci, zst), amd64, imgspecv1.MediaTypeImageManifest},
		{"oci uncompressed", single(oci, raw), amd64, imgspecv1.MediaTypeImageManifest},
		{"docker schema2", single(docker, gz), amd64, updatecachetest.MediaTypeDockerManifest},
		{"oci index amd64", multi(oci, amd64), amd64, imgspecv1.MediaTypeImageIndex},
		{"oci index arm64", multi(oci, arm64), arm64, imgspecv1.MediaTypeImageIndex},
		{"oci index arm/v7", multi(oci, armv7), armv7, imgspecv1.MediaTypeImageIndex},
		{"oci index arm/v6", multi(oci, armv6), armv6, imgspecv1.MediaTypeImageIndex},
		{"docker list arm64", multi(docker, arm64), arm64, updatecachetest.MediaTypeDockerList},
	}
	forEachEnv(t, func(t *testing.T, e *env) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				top, want := tc.build(t)
				repo := "fetch/" + string(rune('a'+i))
				e.push(t, repo, "stable", top)
				_, _, topDigest := topOf(top)
				platform := tc.platform
				c := e.client(registry.Options{Platform: &platform})
				ctx := ctxFor(t, 30*time.Second)
				ref := e.ref(t, repo, "stable")

				for _, tr := range []struct {
					p  path
					by digest.Digest
				}{{checkPath, ""}, {checkPath, topDigest}, {pullPath, ""}, {pullPath, topDigest}} {
					e.reg.Reset()
					got, err := readImage(ctx, tr.p, c, ref, tr.by)
					if err != nil {
						t.Fatalf("%s by %q: %v", tr.p, tr.by, err)
					}
					if got.TopDigest != topDigest || got.TopMediaType != tc.topType {
						t.Errorf("top %s %s, want %s %s", got.TopDigest, got.TopMediaType, topDigest, tc.topType)
					}
					if got.ManifestDigest != want.ManifestDigest || got.ManifestMediaType != want.MediaType || !bytes.Equal(got.Manifest, want.Manifest) {
						t.Errorf("manifest %s %s, want %s %s", got.ManifestDigest, got.ManifestMediaType, want.ManifestDigest, want.MediaType)
					}
					if got.ConfigDigest != want.Config.Digest || !bytes.Equal(got.Config, want.Config.Data) {
						t.Errorf("config %s, want %s", got.ConfigDigest, want.Config.Digest)
					}
					if got.Platform.OS != tc.platform.OS || got.Platform.Architecture != tc.platform.Architecture || got.Platform.Variant != tc.platform.Variant {
						t.Errorf("platform %+v, want %+v", got.Platform, tc.platform)
					}
					if len(got.Layers) != len(want.Layers) || got.Layers[1].Digest != want.Layers[1].Digest {
						t.Errorf("layers %v, want %v", got.Layers, want.Layers)
					}
					if got.Reference != e.reg.Ref(repo, "stable") && got.Reference != e.reg.Ref(repo, topDigest.String()) {
						t.Errorf("reference %q", got.Reference)
					}
					n := e.reg.Counts()
					wantGETs, wantHEADs := 1, 0
					if _, isIndex := top.(*updatecachetest.Index); isIndex {
						wantGETs = 2
					}
					if tr.p == checkPath && tr.by == "" {
						wantHEADs = 1
					}
					if n.Ping != 1 || n.ManifestGET != wantGETs || n.ManifestHEAD != wantHEADs || n.BlobGET != 1 || n.BlobGETs(want.Config.Digest) != 1 {
						t.Errorf("%s by %q: want 1 ping, %d manifest HEADs, %d manifest GETs and 1 blob GET (the config); %v",
							tr.p, tr.by, wantHEADs, wantGETs, n)
					}
				}
			})
		}
	})
}

// topOf returns an artifact's top manifest.
func topOf(a updatecachetest.Artifact) (string, []byte, digest.Digest) {
	switch a := a.(type) {
	case *updatecachetest.Image:
		return a.MediaType, a.Manifest, a.ManifestDigest
	case *updatecachetest.Index:
		return a.MediaType, a.Manifest, a.ManifestDigest
	}
	panic("unknown artifact")
}

// TestPlatformFromSystemContext checks that without Options.Platform the
// SystemContext's choices pick the instance.
func TestPlatformFromSystemContext(t *testing.T) {
	e := fakeEnv(t)
	idx := multiArch(t, "3.0", updatecachetest.OCI)
	e.push(t, "choice/os", "stable", idx)
	sys := *e.sys
	sys.ArchitectureChoice, sys.VariantChoice = "arm", "v7"
	got, err := readImage(ctxFor(t, 30*time.Second), checkPath, e.client(registry.Options{SystemContext: &sys}), e.ref(t, "choice/os", "stable"), "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Platform.Architecture != "arm" || got.Platform.Variant != "v7" || got.ManifestDigest != idx.Images[3].ManifestDigest {
		t.Errorf("chose %+v %s, want arm/v7 %s", got.Platform, got.ManifestDigest, idx.Images[3].ManifestDigest)
	}
}

// TestDeleted: once the manifest is deleted, by tag and by digest the
// image is ErrManifestUnknown.
func TestDeleted(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		img := osImage(t, "4.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
		e.push(t, "deleted/os", "stable", img)
		c := e.client(registry.Options{})
		ctx := ctxFor(t, 30*time.Second)
		ref := e.ref(t, "deleted/os", "stable")
		d, err := digestOf(ctx, c, ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readImage(ctx, pullPath, c, ref, d); err != nil {
			t.Fatal(err)
		}
		if err := e.reg.DeleteManifest(ctx, "deleted/os", d); err != nil {
			t.Fatal(err)
		}
		if _, err := digestOf(ctx, c, ref); !errors.Is(err, registry.ErrManifestUnknown) {
			t.Errorf("Digest after delete: %v, want ErrManifestUnknown", err)
		}
		for _, p := range []path{checkPath, pullPath} {
			for _, by := range []digest.Digest{d, ""} {
				if _, err := readImage(ctx, p, c, ref, by); !errors.Is(err, registry.ErrManifestUnknown) {
					t.Errorf("%s by %q after delete: %v, want ErrManifestUnknown", p, by, err)
				}
			}
		}
	})
}

// TestRegistryGone: a registry that stopped answering is ErrUnavailable.
func TestRegistryGone(t *testing.T) {
	e := fakeEnv(t)
	img := osImage(t, "5.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	e.push(t, "gone/os", "stable", img)
	e.reg.Stop()
	c := e.client(registry.Options{})
	ctx := ctxFor(t, 30*time.Second)
	ref := e.ref(t, "gone/os", "stable")
	if _, err := digestOf(ctx, c, ref); !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Digest: %v, want ErrUnavailable", err)
	}
	for _, p := range []path{checkPath, pullPath} {
		if _, err := readImage(ctx, p, c, ref, img.ManifestDigest); !errors.Is(err, registry.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", p, err)
		}
	}
}

// TestLocalLayout covers a local transport: oci: reads the layout, no
// network, and a top digest that is not what the layout holds is a mismatch.
func TestLocalLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	for _, tc := range []struct {
		name string
		a    updatecachetest.Artifact
	}{
		{"image", osImage(t, "6.0", arm64, updatecachetest.OCI, updatecachetest.Gzip)},
		{"index", multiArch(t, "6.0", updatecachetest.OCI)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := updatecachetest.WriteLayout(dir, "latest", tc.a); err != nil {
				t.Fatal(err)
			}
			ref, err := layout.ParseReference(dir + ":latest")
			if err != nil {
				t.Fatal(err)
			}
			_, _, top := topOf(tc.a)
			c := registry.New(registry.Options{Platform: &arm64})
			ctx := ctxFor(t, 30*time.Second)
			d, err := digestOf(ctx, c, ref)
			if err != nil || d != top {
				t.Fatalf("Digest: %s, %v; want %s", d, err, top)
			}
			for _, tr := range []struct {
				p  path
				by digest.Digest
			}{{checkPath, ""}, {pullPath, d}} {
				got, err := readImage(ctx, tr.p, c, ref, tr.by)
				if err != nil {
					t.Fatal(err)
				}
				if got.TopDigest != top || got.Platform.Architecture != "arm64" || got.Reference != "oci:"+dir+":latest" {
					t.Errorf("%s: got top %s platform %+v reference %q", tr.p, got.TopDigest, got.Platform, got.Reference)
				}
			}
			other := digest.FromString("something else")
			if _, err := readImage(ctx, pullPath, c, ref, other); !errors.Is(err, registry.ErrDigestMismatch) {
				t.Errorf("Open(other digest): %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// TestSentinelsDistinct guards the errors.Is contract: no sentinel matches
// another.
func TestSentinelsDistinct(t *testing.T) {
	all := []error{registry.ErrManifestUnknown, registry.ErrUnauthorized, registry.ErrRateLimited,
		registry.ErrUnavailable, registry.ErrDigestMismatch, registry.ErrTooLarge,
		registry.ErrUnsupportedManifest, registry.ErrNoMatchingPlatform, registry.ErrMalformed,
		registry.ErrBlocked, registry.ErrInsecureRedirect, registry.ErrInvalidReference,
		registry.ErrPolicyUnsupported, registry.ErrPolicyInvalid, registry.ErrPolicyRejected}
	for i, a := range all {
		if slices.IndexFunc(all, func(b error) bool { return errors.Is(a, b) }) != i {
			t.Errorf("%v matches another sentinel", a)
		}
	}
}

// TestAuth runs the real docker-registry with htpasswd auth: anonymous and
// wrong credentials are ErrUnauthorized, the right ones (from the
// SystemContext) work.
func TestAuth(t *testing.T) {
	host, _ := testtool.StartRegistryWith(t, testtool.RegistryConfig{HTPasswd: map[string]string{"updater": "s3cret"}})
	img := osImage(t, "8.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	ctx := ctxFor(t, 30*time.Second)
	if _, err := updatecachetest.Push(ctx, host, "auth/os", "stable", img, updatecachetest.HTTPOptions{}); err == nil {
		t.Fatal("anonymous push accepted: the registry is not enforcing auth")
	}
	if _, err := updatecachetest.Push(ctx, host, "auth/os", "stable", img, updatecachetest.HTTPOptions{Username: "updater", Password: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	ref, err := docker.ParseReference("//" + host + "/auth/os:stable")
	if err != nil {
		t.Fatal(err)
	}
	base, err := updatecachetest.SystemContext(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		auth *types.DockerAuthConfig
		want error
	}{
		{"anonymous", nil, registry.ErrUnauthorized},
		{"wrong password", &types.DockerAuthConfig{Username: "updater", Password: "guess"}, registry.ErrUnauthorized},
		{"right password", &types.DockerAuthConfig{Username: "updater", Password: "s3cret"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := *base
			sys.DockerAuthConfig = tc.auth
			c := registry.New(registry.Options{SystemContext: &sys})
			for _, tr := range []struct {
				p  path
				by digest.Digest
			}{{checkPath, ""}, {pullPath, img.ManifestDigest}} {
				got, err := readImage(ctx, tr.p, c, ref, tr.by)
				if tc.want != nil {
					if !errors.Is(err, tc.want) {
						t.Errorf("%s: %v, want %v", tr.p, err, tc.want)
					}
					continue
				}
				if err != nil || got.ConfigDigest != img.ConfigDigest() {
					t.Errorf("%s: %v", tr.p, err)
				}
			}
		})
	}
}
