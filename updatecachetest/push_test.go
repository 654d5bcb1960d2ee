package updatecachetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/osimage/updatecache/internal/testtool"
)

// skopeo runs the real skopeo, isolated from the machine's registries.conf
// and credentials, and returns its standard output.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := testtool.Need(t, "skopeo", "skopeo")
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--insecure-policy", "--registries-conf", conf, "--tmpdir", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestPushSkopeo pushes each kind of artifact to the in-process registry
// and to the real docker-registry, and has skopeo, an independent client,
// read the manifest back and copy the whole image (verifying every blob's
// digest); the same for WriteLayout's OCI layouts.
func TestPushSkopeo(t *testing.T) {
	realHost, _ := testtool.StartRegistry(t)
	hosts := map[string]string{"fake": NewRegistry(t).Host(), "real": realHost}

	artifacts := map[string]Artifact{}
	for name, spec := range map[string]ImageSpec{
		"oci-gzip":   testSpec(OCI, Gzip),
		"oci-zstd":   testSpec(OCI, Zstd),
		"docker-raw": testSpec(Docker, Uncompressed),
	} {
		img, err := NewImage(spec)
		if err != nil {
			t.Fatal(err)
		}
		artifacts[name] = img
	}
	var imgs []*Image
	for _, arch := range []string{"amd64", "arm64"} {
		spec := testSpec(OCI, Gzip)
		spec.Architecture = arch
		img, err := NewImage(spec)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	idx, err := NewIndex(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	artifacts["index"] = idx

	ctx := context.Background()
	for hostName, host := range hosts {
		for name, a := range artifacts {
			t.Run(hostName+"/"+name, func(t *testing.T) {
				_, manifest, want := a.topManifest()
				got, err := Push(ctx, host, "skopeo/"+name, "stable", a, HTTPOptions{})
				if err != nil || got != want {
					t.Fatalf("Push: %s, %v; want %s", got, err, want)
				}
				ref := "docker://" + host + "/skopeo/" + name + ":stable"
				raw := skopeo(t, "inspect", "--raw", "--tls-verify=false", "--no-creds", ref)
				if !bytes.Equal(raw, manifest) {
					t.Errorf("registry serves\n%s\nwant\n%s", raw, manifest)
				}
				skopeo(t, "copy", "--all", "--src-tls-verify=false", "--src-no-creds", ref, "oci:"+filepath.Join(t.TempDir(), "copy")+":x")
			})
		}
	}
	for name, a := range artifacts {
		t.Run("layout/"+name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			mediaType, manifest, _ := a.topManifest()
			err := WriteLayout(dir, "stable", a)
			if mediaType == MediaTypeDockerManifest {
				if err == nil {
					t.Fatal("WriteLayout took a Docker manifest")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if raw := skopeo(t, "inspect", "--raw", "oci:"+dir+":stable"); !bytes.Equal(raw, manifest) {
				t.Errorf("layout holds\n%s\nwant\n%s", raw, manifest)
			}
			skopeo(t, "copy", "--all", "oci:"+dir+":stable", "dir:"+filepath.Join(t.TempDir(), "copy"))
		})
	}
}
