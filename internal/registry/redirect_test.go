package registry_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// TestRedirectToPlainHTTP: a registry reached over verified HTTPS that
// redirects a manifest or a blob to http:// is refused with
// ErrInsecureRedirect, along the check and the pull path, before anything
// is sent there; Go's client would otherwise follow and, the target being
// the same host on another port, resend the Basic credential in clear.
// Redirects to HTTPS still work, and with TLS verification off plain HTTP
// is followed as before.
func TestRedirectToPlainHTTP(t *testing.T) {
	cert, err := updatecachetest.NewCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cert.CertPEM)
	host, _ := testtool.StartRegistryWith(t, testtool.RegistryConfig{
		TLSCert: cert.CertPEM, TLSKey: cert.KeyPEM, HTPasswd: map[string]string{"updater": "s3cret"},
	})
	real := &url.URL{Scheme: "https", Host: host}
	img := osImage(t, "1.0", amd64, updatecachetest.OCI, updatecachetest.Gzip)
	ctx := ctxFor(t, 30*time.Second)
	if _, err := updatecachetest.Push(ctx, host, "redirect/os", "stable", img, updatecachetest.HTTPOptions{
		Username: "updater", Password: "s3cret", TLS: &tls.Config{RootCAs: roots},
	}); err != nil {
		t.Fatal(err)
	}
	front := updatecachetest.NewTLSProxy(t, real, cert)
	// The redirect target: plain HTTP on 127.0.0.1, the same host on
	// another port, recording the credentials it is sent.
	var mu sync.Mutex
	var sent []string
	sink := updatecachetest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get("Authorization"))
		mu.Unlock()
		http.NotFound(w, r)
	}))

	newClient := func(t *testing.T, verify bool) *registry.Client {
		sys, err := updatecachetest.SystemContext(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if verify {
			sys.DockerInsecureSkipTLSVerify = types.OptionalBoolUndefined
		}
		if err := cert.Trust(sys.DockerPerHostCertDirPath, front.Host()); err != nil {
			t.Fatal(err)
		}
		writeAuthFile(t, sys, front.Host(), basicAuth("updater", "s3cret"))
		return registry.New(registry.Options{SystemContext: sys})
	}
	ref := parseRef(t, "//"+front.Host()+"/redirect/os:stable")

	for _, tc := range []struct {
		name   string
		kind   updatecachetest.Kind
		to     *url.URL
		verify bool
		want   error // nil: success
	}{
		{"blob to plain HTTP", updatecachetest.KindBlob, sink.URL(), true, registry.ErrInsecureRedirect},
		{"manifest to plain HTTP", updatecachetest.KindManifest, sink.URL(), true, registry.ErrInsecureRedirect},
		{"blob to HTTPS", updatecachetest.KindBlob, real, true, nil},
		{"manifest to HTTPS", updatecachetest.KindManifest, real, true, nil},
		// The sink answers 404.
		{"blob to plain HTTP, TLS verification off", updatecachetest.KindBlob, sink.URL(), false, registry.ErrManifestUnknown},
	} {
		for _, p := range []path{checkPath, pullPath} {
			t.Run(tc.name+"/"+string(p), func(t *testing.T) {
				front.AddFault(updatecachetest.Fault{Method: http.MethodGet, Kind: tc.kind, Redirect: tc.to})
				defer front.ClearFaults()
				sink.Reset()
				_, err := readImage(ctx, p, newClient(t, tc.verify), ref, "")
				if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				mu.Lock()
				got := sent
				sent = nil
				mu.Unlock()
				if tc.verify && len(got) != 0 {
					t.Errorf("the plain-HTTP target was sent %d requests, with credentials %q", len(got), got)
				} else if !tc.verify && (len(got) != 1 || !strings.HasPrefix(got[0], "Basic ")) {
					// What the refusal prevents: Go's client resends Basic
					// auth to the same host on another port, in clear.
					t.Errorf("with TLS verification off: sent %q, want the redirect followed with the Basic credential", got)
				}
				if front.Counts().Total == 0 {
					t.Error("the front saw no request")
				}
				t.Log(err)
			})
		}
	}
}
