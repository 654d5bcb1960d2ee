package registry_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// benchRTT is the delay the counting proxies add to every request, the
// registry's and the token server's.
const benchRTT = 50 * time.Millisecond

// BenchmarkCheck measures an update check against the real registry at a
// round trip of benchRTT, with and without token authentication: "no
// update" is the HEAD alone, "new update" the HEAD and then the manifest
// and config. "two sessions" is the check as it was before Check
// (containers/image's docker.GetDigest, then a containers/image source
// pinned to its digest), "Check" this package's one session; "skopeo
// inspect --no-tags" reads the manifest and config by tag. Requests and
// token requests per check are reported beside the time.
//
//	go test ./internal/registry -run '^$' -bench BenchmarkCheck -benchtime 20x
func BenchmarkCheck(b *testing.B) {
	img := osImage(b, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	ctx := context.Background()
	for _, auth := range []string{"no auth", "token auth"} {
		b.Run(auth, func(b *testing.B) {
			reg, tokens := benchRegistry(b, auth == "token auth")
			if _, err := updatecachetest.Push(ctx, reg.Host(), "bench/os", "stable", img,
				updatecachetest.HTTPOptions{Username: "updater", Password: "s3cret"}); err != nil {
				b.Fatal(err)
			}
			for _, f := range []updatecachetest.Fault{{Delay: benchRTT}} {
				reg.AddFault(f)
				tokens.AddFault(f)
			}
			sys, err := updatecachetest.SystemContext(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			ref := parseRef(b, "//"+reg.Host()+"/bench/os:stable")
			c := registry.New(registry.Options{SystemContext: sys})
			for _, m := range []struct {
				name  string
				check func() error
			}{
				{"no update/two sessions", func() error { _, err := docker.GetDigest(ctx, sys, ref); return err }},
				{"no update/Check", func() error {
					ch, err := c.Check(ctx, ref)
					if err == nil {
						ch.Close()
					}
					return err
				}},
				{"new update/two sessions", func() error {
					d, err := docker.GetDigest(ctx, sys, ref)
					if err == nil {
						_, err = readImage(ctx, pullPath, c, ref, d)
					}
					return err
				}},
				{"new update/Check", func() error { _, err := readImage(ctx, checkPath, c, ref, ""); return err }},
				{"skopeo inspect --no-tags", skopeoInspect(b, sys, ref)},
			} {
				b.Run(m.name, func(b *testing.B) {
					reg.Reset()
					tokens.Reset()
					for b.Loop() {
						if err := m.check(); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(reg.Counts().Total)/float64(b.N), "requests/op")
					b.ReportMetric(float64(tokens.Counts().Total)/float64(b.N), "tokens/op")
					b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/op")
				})
			}
		})
	}
}

// benchRegistry starts docker-registry (with token auth, whose issuer
// knows updater/s3cret, if asked) behind a counting proxy, and the token
// server (unused without auth).
func benchRegistry(b *testing.B, tokenAuth bool) (reg, tokens *updatecachetest.Registry) {
	issuer, err := updatecachetest.NewTokenIssuer("registry.test", "updatecachetest")
	if err != nil {
		b.Fatal(err)
	}
	issuer.AddUser("updater", "s3cret")
	tokens = updatecachetest.NewServer(b, issuer)
	var cfg testtool.RegistryConfig
	if tokenAuth {
		cfg.Token = &testtool.TokenAuth{Realm: tokens.URL().String() + "/token", Service: issuer.Service(),
			Issuer: issuer.Issuer(), RootCertBundle: issuer.RootCertBundle()}
	}
	host, _ := testtool.StartRegistryWith(b, cfg)
	return updatecachetest.NewProxy(b, &url.URL{Scheme: "http", Host: host}), tokens
}

// skopeoInspect returns a run of `skopeo inspect --no-tags` on ref with
// sys's configuration.
func skopeoInspect(b *testing.B, sys *types.SystemContext, ref types.ImageReference) func() error {
	bin := testtool.Need(b, "skopeo", "skopeo")
	conf := filepath.Join(b.TempDir(), "containers.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	return func() error {
		cmd := exec.Command(bin, "inspect", "--no-tags", "--tls-verify=false", "--authfile", sys.AuthFilePath,
			"--registries-conf", sys.SystemRegistriesConfPath, "docker:"+ref.StringWithinTransport())
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Logf("%s", out)
		}
		return err
	}
}
