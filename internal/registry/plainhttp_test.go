package registry

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/types"
)

// TestGuardContainersImage checks the proxy hook that keeps
// containers/image from following redirects to plain HTTP: which URLs it
// refuses, and that it still hands the others to the proxy the
// SystemContext chose.
func TestGuardContainersImage(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	regd := filepath.Join(dir, "registries.d")
	if err := os.MkdirAll(regd, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		conf:                             "[[registry]]\nlocation = \"plain.example:5000\"\ninsecure = true\n",
		filepath.Join(regd, "sigs.yaml"): "docker:\n  registry.example:\n    lookaside: http://sigs.example/store\n",
	} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	proxy := &url.URL{Scheme: "http", Host: "proxy.example:3128"}
	sys := &types.SystemContext{SystemRegistriesConfPath: conf, SystemRegistriesConfDirPath: filepath.Join(dir, "none"),
		RegistriesDirPath: regd, DockerProxyURL: proxy}
	ref, err := docker.ParseReference("//registry.example/os:stable")
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPlainHTTPPolicy(sys)
	if err != nil {
		t.Fatal(err)
	}
	guarded, err := guardContainersImage(sys, ref, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url     string
		refused bool
	}{
		{"https://registry.example/v2/", false},
		{"https://cdn.example/blob", false},
		{"http://cdn.example/blob", true},
		{"http://registry.example/v2/os/blobs/sha256:0", true},
		{"http://plain.example:5000/v2/", false},           // insecure in registries.conf
		{"http://sigs.example/store/os@sha256=0/1", false}, // the lookaside store
	} {
		u, _ := url.Parse(tc.url)
		got, err := guarded.DockerProxy(u)
		switch {
		case tc.refused && !errors.Is(err, ErrInsecureRedirect):
			t.Errorf("%s: %v, %v; want ErrInsecureRedirect", tc.url, got, err)
		case !tc.refused && (err != nil || got != proxy):
			t.Errorf("%s: %v, %v; want the SystemContext's proxy", tc.url, got, err)
		}
	}

	// TLS verification off everywhere: nothing to guard.
	off := *sys
	off.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	if p, err = newPlainHTTPPolicy(&off); err != nil {
		t.Fatal(err)
	}
	if same, err := guardContainersImage(&off, ref, p); err != nil || same != &off {
		t.Errorf("TLS verification off: got a new SystemContext (%v)", err)
	}
}
