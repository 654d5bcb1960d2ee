package registry_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
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

// tokenEnv is the real docker-registry with distribution's token
// authentication, behind a counting proxy, and the kit's token issuer on a
// counting server of its own.
type tokenEnv struct {
	reg    *updatecachetest.Registry // counts the registry's requests
	tokens *updatecachetest.Registry // counts the token requests
}

func startTokenEnv(t *testing.T) *tokenEnv {
	t.Helper()
	issuer, err := updatecachetest.NewTokenIssuer("registry.test", "updatecachetest")
	if err != nil {
		t.Fatal(err)
	}
	issuer.AddUser("updater", "s3cret")
	issuer.AddIdentityToken("refresh-0123", "updater")
	tokens := updatecachetest.NewServer(t, issuer)
	host, _ := testtool.StartRegistryWith(t, testtool.RegistryConfig{Token: &testtool.TokenAuth{
		Realm: tokens.URL().String() + "/token", Service: issuer.Service(), Issuer: issuer.Issuer(),
		RootCertBundle: issuer.RootCertBundle(),
	}})
	return &tokenEnv{reg: updatecachetest.NewProxy(t, &url.URL{Scheme: "http", Host: host}), tokens: tokens}
}

func (te *tokenEnv) reset() {
	te.reg.Reset()
	te.tokens.Reset()
}

// writeAuthFile writes an auth file (containers-auth.json) with one entry
// for host.
func writeAuthFile(t *testing.T, sys *types.SystemContext, host string, entry map[string]string) {
	t.Helper()
	data, err := json.Marshal(map[string]any{"auths": map[string]any{host: entry}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sys.AuthFilePath, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func basicAuth(user, password string) map[string]string {
	return map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
}

// identityToken is an auth file entry as a login with an identity token
// leaves it: a user name without a password, and the token.
func identityToken(token string) map[string]string {
	entry := basicAuth("updater", "")
	entry["identitytoken"] = token
	return entry
}

// TestTokenAuth checks and pulls against docker-registry with `auth:
// token`, as Docker Hub, quay.io and ghcr.io authenticate: anonymously,
// with credentials from an auth file (Basic auth on the token request),
// with an identity token (OAuth2 refresh), and with wrong credentials
// (ErrUnauthorized). A check is one ping and one token; so is a pull.
func TestTokenAuth(t *testing.T) {
	te := startTokenEnv(t)
	img := bigImage(t, "1.0", amd64)
	ctx := ctxFor(t, 60*time.Second)
	if _, err := updatecachetest.Push(ctx, te.reg.Host(), "token/os", "stable", img, updatecachetest.HTTPOptions{}); err == nil {
		t.Fatal("anonymous push accepted: the registry is not enforcing token auth")
	}
	if _, err := updatecachetest.Push(ctx, te.reg.Host(), "token/os", "stable", img,
		updatecachetest.HTTPOptions{Username: "updater", Password: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	ref := parseRef(t, "//"+te.reg.Host()+"/token/os:stable")

	for _, tc := range []struct {
		name string
		auth map[string]string // auth file entry; nil: none
		want error
	}{
		{"anonymous", nil, nil},
		{"credentials from the auth file", basicAuth("updater", "s3cret"), nil},
		{"identity token from the auth file", identityToken("refresh-0123"), nil},
		{"wrong password", basicAuth("updater", "guess"), registry.ErrUnauthorized},
		{"unknown identity token", identityToken("refresh-9999"), registry.ErrUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys, err := updatecachetest.SystemContext(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != nil {
				writeAuthFile(t, sys, te.reg.Host(), tc.auth)
			}
			c := registry.New(registry.Options{SystemContext: sys})

			// A check of a new image: 4 requests and 1 token.
			te.reset()
			got, err := readImage(ctx, checkPath, c, ref, "")
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("check: %v, want %v", err, tc.want)
				}
				if _, err := readImage(ctx, pullPath, c, ref, ""); !errors.Is(err, tc.want) {
					t.Fatalf("pull: %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			if got.TopDigest != img.ManifestDigest || got.ConfigDigest != img.ConfigDigest() {
				t.Errorf("check read %s, want %s", got.TopDigest, img.ManifestDigest)
			}
			n, tokens := te.reg.Counts(), te.tokens.Counts()
			wantLog := []string{"GET /v2/", "HEAD /v2/token/os/manifests/stable",
				"GET /v2/token/os/manifests/" + img.ManifestDigest.String(), "GET /v2/token/os/blobs/" + img.ConfigDigest().String()}
			method := "GET"
			if tc.auth["identitytoken"] != "" {
				method = "POST" // OAuth2 refresh-token grant
			}
			if !slices.Equal(n.Log, wantLog) || !slices.Equal(tokens.Log, []string{method + " /token"}) {
				t.Errorf("check of a new image: want %q and 1 token %s; registry %v; token server %v", wantLog, method, n, tokens)
			}

			// A check that finds nothing new: 2 requests and 1 token.
			te.reset()
			ch, err := c.Check(ctx, ref)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			ch.Close()
			if n, tokens := te.reg.Counts(), te.tokens.Counts(); n.Total != 2 || n.Ping != 1 || n.ManifestHEAD != 1 || tokens.Total != 1 {
				t.Errorf("check finding nothing new: want ping, HEAD and 1 token; registry %v; token server %v", n, tokens)
			}

			// A pull: every layer through one containers/image session.
			te.reset()
			src, err := c.Open(ctx, ref, img.ManifestDigest)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			defer src.Close()
			pulled, err := src.Image(ctx)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			for i, desc := range pulled.Layers {
				data, err := readLayer(ctx, src, desc)
				if err != nil || !bytes.Equal(data, img.Layers[i].Data) {
					t.Fatalf("layer %d: %d bytes, %v", i, len(data), err)
				}
			}
			if n, tokens := te.reg.Counts(), te.tokens.Counts(); n.Ping != 1 || tokens.Total != 1 || n.BlobGET != 1+len(img.Layers) {
				t.Errorf("pull: want 1 ping, 1 token and %d blob GETs; registry %v; token server %v", 1+len(img.Layers), n, tokens)
			}
		})
	}
}

// TestTokenAuthBeforeCheck documents what Check saves: the two
// containers/image sessions of Digest and Open each ping and fetch a
// token.
func TestTokenAuthBeforeCheck(t *testing.T) {
	te := startTokenEnv(t)
	img := osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	ctx := ctxFor(t, 30*time.Second)
	if _, err := updatecachetest.Push(ctx, te.reg.Host(), "token/os", "stable", img,
		updatecachetest.HTTPOptions{Username: "updater", Password: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	sys, err := updatecachetest.SystemContext(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	te.reset()
	ref := parseRef(t, "//"+te.reg.Host()+"/token/os:stable")
	d, err := docker.GetDigest(ctx, sys, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readImage(ctx, pullPath, registry.New(registry.Options{SystemContext: sys}), ref, d); err != nil {
		t.Fatal(err)
	}
	if n, tokens := te.reg.Counts(), te.tokens.Counts(); n.Ping != 2 || tokens.Total != 2 || n.Total != 5 {
		t.Errorf("two sessions: want 2 pings, 5 requests and 2 tokens; registry %v; token server %v", n, tokens)
	}
}
