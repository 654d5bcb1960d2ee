package ostree

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBootedRoot lays out a booted system's files under a directory as
// libostree does: the ostree= argument, the boot symlinks in the sysroot,
// the deployment and its origin.
func fakeBootedRoot(t *testing.T, cmdline, origin string) (root, checksum string) {
	t.Helper()
	root = t.TempDir()
	checksum = strings.Repeat("ab", 32)
	files := map[string]string{
		"proc/cmdline": cmdline,
		"sysroot/ostree/deploy/fedora/deploy/" + checksum + ".0.origin": origin,
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"sysroot/ostree/boot.1":                 "boot.1.1",
		"sysroot/ostree/boot.1.1/fedora/cafe/0": "../../../deploy/fedora/deploy/" + checksum + ".0",
	}
	for name, target := range links {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "sysroot/ostree/deploy/fedora/deploy", checksum+".0"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root, checksum
}

func TestBootedDeployment(t *testing.T) {
	const origin = "[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/fedora/fedora-coreos:stable\n"
	root, checksum := fakeBootedRoot(t, "BOOT_IMAGE=(hd0,gpt3)/vmlinuz rw ostree=/ostree/boot.1/fedora/cafe/0 quiet\n", origin)
	d, err := BootedDeployment(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.OSName != "fedora" || d.Checksum != checksum || d.Serial != 0 ||
		d.Origin["container-image-reference"] != "ostree-unverified-registry:quay.io/fedora/fedora-coreos:stable" {
		t.Errorf("BootedDeployment = %+v", d)
	}

	for name, cmdline := range map[string]string{
		"no ostree= argument": "BOOT_IMAGE=/vmlinuz root=/dev/sda1\n",
		"dangling boot link":  "ostree=/ostree/boot.0/fedora/cafe/0\n",
		"not a deployment":    "ostree=/ostree/boot.1.1\n",
	} {
		root, _ := fakeBootedRoot(t, cmdline, origin)
		if _, err := BootedDeployment(root); !errors.Is(err, ErrNotBooted) {
			t.Errorf("%s: %v; want ErrNotBooted", name, err)
		}
	}
	if _, err := BootedDeployment(t.TempDir()); !errors.Is(err, ErrNotBooted) {
		t.Errorf("no /proc/cmdline: %v; want ErrNotBooted", err)
	}
	root, _ = fakeBootedRoot(t, "ostree=/ostree/boot.1/fedora/cafe/0", "not a key file")
	if _, err := BootedDeployment(root); !errors.Is(err, ErrCorrupt) {
		t.Errorf("malformed origin: %v; want ErrCorrupt", err)
	}
}
