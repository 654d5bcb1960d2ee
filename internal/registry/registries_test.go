package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"testing"
	"time"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// confSystemContext returns a SystemContext whose registries.conf is conf.
func confSystemContext(t *testing.T, conf string) *types.SystemContext {
	t.Helper()
	sys, err := updatecachetest.SystemContext(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sys.SystemRegistriesConfPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return sys
}

// realRegistry is docker-registry behind a counting proxy.
func realRegistry(t *testing.T) *updatecachetest.Registry {
	host, _ := testtool.StartRegistry(t)
	return updatecachetest.NewProxy(t, &url.URL{Scheme: "http", Host: host})
}

// checkImage runs a whole check of ref (Check, then Image) and returns
// the Check's endpoint.
func checkImage(ctx context.Context, c *registry.Client, ref types.ImageReference) (*registry.Image, string, error) {
	ch, err := c.Check(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	defer ch.Close()
	img, err := ch.Image(ctx)
	return img, ch.Endpoint(), err
}

// wantRequests fails t unless reg saw exactly the requests of a check of
// repo:tag for img (ping, HEAD, manifest GET, config GET), or none.
func wantRequests(t *testing.T, what string, reg *updatecachetest.Registry, repo string, img *updatecachetest.Image, check bool) {
	t.Helper()
	var want []string
	if check {
		want = []string{"GET /v2/", "HEAD /v2/" + repo + "/manifests/stable",
			"GET /v2/" + repo + "/manifests/" + img.ManifestDigest.String(), "GET /v2/" + repo + "/blobs/" + img.ConfigDigest().String()}
	}
	if n := reg.Counts(); !slices.Equal(n.Log, want) {
		t.Errorf("%s: requests %q, want %q", what, n.Log, want)
	}
}

// TestRegistriesConf: the check reads from the pull sources
// registries.conf gives, as containers/image's pulls do, against the real
// registry: mirrors in order, a location rewrite, blocked registries,
// pull-from-mirror, insecure registries, and a pull-through cache.
func TestRegistriesConf(t *testing.T) {
	origin, mirror := realRegistry(t), realRegistry(t)
	img := osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	other := osImage(t, "0.9", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	ctx := ctxFor(t, 60*time.Second)
	push := func(t *testing.T, reg *updatecachetest.Registry, repo string, a *updatecachetest.Image) {
		t.Helper()
		if _, err := reg.Push(ctx, repo, "stable", a); err != nil {
			t.Fatal(err)
		}
	}
	reset := func() { origin.Reset(); mirror.Reset() }

	t.Run("mirror with the origin down", func(t *testing.T) {
		down := updatecachetest.NewRegistry(t)
		down.Stop()
		push(t, mirror, "conf/down", img)
		sys := confSystemContext(t, fmt.Sprintf(`[[registry]]
location = %q
[[registry.mirror]]
location = %q
`, down.Host(), mirror.Host()))
		ref := parseRef(t, "//"+down.Host()+"/conf/down:stable")
		reset()
		got, endpoint, err := checkImage(ctx, registry.New(registry.Options{SystemContext: sys}), ref)
		if err != nil {
			t.Fatal(err)
		}
		if got.TopDigest != img.ManifestDigest || endpoint != mirror.Host()+"/conf/down:stable" {
			t.Errorf("read %s from %q, want %s from the mirror", got.TopDigest, endpoint, img.ManifestDigest)
		}
		wantRequests(t, "mirror", mirror, "conf/down", img, true)
		// containers/image's own HEAD ignores registries.conf: it fails.
		if _, err := docker.GetDigest(ctx, sys, ref); err == nil {
			t.Error("docker.GetDigest reached the mirror; the premise of this test is gone")
		}
		if _, err := readImage(ctx, pullPath, registry.New(registry.Options{SystemContext: sys}), ref, img.ManifestDigest); err != nil {
			t.Errorf("pull through the mirror: %v", err)
		}
	})

	t.Run("mirrors in order", func(t *testing.T) {
		empty := updatecachetest.NewRegistry(t) // a mirror without the image
		push(t, mirror, "conf/order", img)
		push(t, origin, "conf/order", other)
		sys := confSystemContext(t, fmt.Sprintf(`[[registry]]
location = %q
[[registry.mirror]]
location = %q
[[registry.mirror]]
location = %q
`, origin.Host(), empty.Host(), mirror.Host()))
		reset()
		got, endpoint, err := checkImage(ctx, registry.New(registry.Options{SystemContext: sys}), parseRef(t, "//"+origin.Host()+"/conf/order:stable"))
		if err != nil {
			t.Fatal(err)
		}
		if got.TopDigest != img.ManifestDigest || endpoint != mirror.Host()+"/conf/order:stable" {
			t.Errorf("read %s from %q, want %s from the second mirror", got.TopDigest, endpoint, img.ManifestDigest)
		}
		if n := empty.Counts(); !slices.Equal(n.Log, []string{"GET /v2/", "HEAD /v2/conf/order/manifests/stable"}) {
			t.Errorf("first mirror: %v, want its ping and a HEAD", n)
		}
		wantRequests(t, "second mirror", mirror, "conf/order", img, true)
		wantRequests(t, "origin", origin, "conf/order", img, false)
	})

	t.Run("location rewrite", func(t *testing.T) {
		push(t, origin, "rewritten/os", img)
		sys := confSystemContext(t, fmt.Sprintf(`[[registry]]
prefix = "example.test/os"
location = "%s/rewritten/os"
`, origin.Host()))
		reset()
		got, endpoint, err := checkImage(ctx, registry.New(registry.Options{SystemContext: sys}), parseRef(t, "//example.test/os:stable"))
		if err != nil {
			t.Fatal(err)
		}
		if got.TopDigest != img.ManifestDigest || endpoint != origin.Host()+"/rewritten/os:stable" {
			t.Errorf("read %s from %q", got.TopDigest, endpoint)
		}
		wantRequests(t, "rewritten location", origin, "rewritten/os", img, true)
	})

	t.Run("blocked", func(t *testing.T) {
		push(t, origin, "conf/blocked", img)
		sys := confSystemContext(t, fmt.Sprintf("[[registry]]\nlocation = %q\nblocked = true\n", origin.Host()))
		ref := parseRef(t, "//"+origin.Host()+"/conf/blocked:stable")
		c := registry.New(registry.Options{SystemContext: sys})
		reset()
		for _, p := range []path{checkPath, pullPath} {
			if _, err := readImage(ctx, p, c, ref, ""); !errors.Is(err, registry.ErrBlocked) {
				t.Errorf("%s: %v, want ErrBlocked", p, err)
			}
		}
		if n := origin.Counts(); n.Total != 0 {
			t.Errorf("the blocked registry was sent %v", n)
		}
	})

	t.Run("blocked with a mirror", func(t *testing.T) {
		// containers/image applies blocked to the registry's own location:
		// its mirrors are still used.
		push(t, mirror, "conf/blocked-mirror", img)
		sys := confSystemContext(t, fmt.Sprintf("[[registry]]\nlocation = %q\nblocked = true\n[[registry.mirror]]\nlocation = %q\n",
			origin.Host(), mirror.Host()))
		reset()
		if _, endpoint, err := checkImage(ctx, registry.New(registry.Options{SystemContext: sys}),
			parseRef(t, "//"+origin.Host()+"/conf/blocked-mirror:stable")); err != nil || endpoint != mirror.Host()+"/conf/blocked-mirror:stable" {
			t.Errorf("read from %q: %v, want the mirror", endpoint, err)
		}
		if n := origin.Counts(); n.Total != 0 {
			t.Errorf("the blocked registry was sent %v", n)
		}
	})

	t.Run("pull-from-mirror digest-only", func(t *testing.T) {
		push(t, origin, "conf/digest-only", img)
		push(t, mirror, "conf/digest-only", img)
		sys := confSystemContext(t, fmt.Sprintf(`[[registry]]
location = %q
[[registry.mirror]]
location = %q
pull-from-mirror = "digest-only"
`, origin.Host(), mirror.Host()))
		c := registry.New(registry.Options{SystemContext: sys})
		ref := parseRef(t, "//"+origin.Host()+"/conf/digest-only:stable")
		reset()
		if _, endpoint, err := checkImage(ctx, c, ref); err != nil || endpoint != origin.Host()+"/conf/digest-only:stable" {
			t.Errorf("by tag: read from %q: %v, want the origin", endpoint, err)
		}
		wantRequests(t, "by tag, origin", origin, "conf/digest-only", img, true)
		wantRequests(t, "by tag, mirror", mirror, "conf/digest-only", img, false)

		pinned, err := registry.Pin(ref, img.ManifestDigest)
		if err != nil {
			t.Fatal(err)
		}
		reset()
		want := mirror.Host() + "/conf/digest-only@" + img.ManifestDigest.String()
		if _, endpoint, err := checkImage(ctx, c, pinned); err != nil || endpoint != want {
			t.Errorf("by digest: read from %q: %v, want %q", endpoint, err, want)
		}
		if n := origin.Counts(); n.Total != 0 {
			t.Errorf("by digest, origin: %v, want nothing", n)
		}
	})

	t.Run("insecure", func(t *testing.T) {
		push(t, origin, "conf/insecure", img)
		ref := parseRef(t, "//"+origin.Host()+"/conf/insecure:stable")
		for _, tc := range []struct {
			conf string
			want error
		}{
			{"", registry.ErrConfig}, // HTTPS to a plain-HTTP registry: only configuration fixes it
			{fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", origin.Host()), nil},
		} {
			sys := confSystemContext(t, tc.conf)
			sys.DockerInsecureSkipTLSVerify = types.OptionalBoolUndefined // registries.conf decides
			c := registry.New(registry.Options{SystemContext: sys})
			for _, p := range []path{checkPath, pullPath} {
				if _, err := readImage(ctx, p, c, ref, ""); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
					t.Errorf("%q, %s: %v, want %v", tc.conf, p, err, tc.want)
				}
			}
		}
	})

	t.Run("pull-through cache as a mirror", func(t *testing.T) {
		push(t, origin, "conf/cached", img)
		host, _ := testtool.StartRegistryWith(t, testtool.RegistryConfig{ProxyRemoteURL: origin.URL().String()})
		cache := updatecachetest.NewProxy(t, &url.URL{Scheme: "http", Host: host})
		sys := confSystemContext(t, fmt.Sprintf("[[registry]]\nlocation = %q\n[[registry.mirror]]\nlocation = %q\n",
			origin.Host(), cache.Host()))
		c := registry.New(registry.Options{SystemContext: sys})
		ref := parseRef(t, "//"+origin.Host()+"/conf/cached:stable")
		reset()
		got, endpoint, err := checkImage(ctx, c, ref)
		if err != nil {
			t.Fatal(err)
		}
		if got.TopDigest != img.ManifestDigest || endpoint != cache.Host()+"/conf/cached:stable" {
			t.Errorf("read %s from %q, want %s from the cache", got.TopDigest, endpoint, img.ManifestDigest)
		}
		wantRequests(t, "cache", cache, "conf/cached", img, true)
		if origin.Counts().Total == 0 {
			t.Error("the cache did not fetch from the origin")
		}
		// The layers come through the cache too.
		src, err := c.Open(ctx, ref, got.TopDigest)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		for _, desc := range got.Layers {
			if _, err := readLayer(ctx, src, desc); err != nil {
				t.Errorf("layer %s through the cache: %v", desc.Digest, err)
			}
		}
	})
}
