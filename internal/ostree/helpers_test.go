package ostree

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/osimage/updatecache/internal/testtool"
	"golang.org/x/sys/unix"
)

// ostreeInit makes a repository with the real tool and returns its path.
func ostreeInit(t *testing.T, mode string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	testtool.RunOstree(t, "init", "--repo="+dir, "--mode="+mode)
	return dir
}

// ostreeRepo makes an archive repository with the real tool and opens it.
func ostreeRepo(t *testing.T) *Repo {
	t.Helper()
	r, err := Open(ostreeInit(t, "archive"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ostreeCommit commits a small tree (files name -> content) with the real
// tool, passing extra arguments (branch, metadata, ...), and returns the
// commit checksum.
func ostreeCommit(t *testing.T, r *Repo, files map[string]string, args ...string) string {
	t.Helper()
	src := t.TempDir()
	for name, content := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return ostreeCommitDir(t, r, src, args...)
}

// ostreeCommitDir commits the directory src with the real tool.
func ostreeCommitDir(t *testing.T, r *Repo, src string, args ...string) string {
	t.Helper()
	out := testtool.RunOstree(t, append([]string{"commit", "--repo=" + r.Path(), "--tree=dir=" + src}, args...)...)
	sum := strings.TrimSpace(out)
	if !ValidChecksum(sum) {
		t.Fatalf("ostree commit printed %q", out)
	}
	return sum
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func unixSetxattr(path, name string, value []byte) error { return unix.Setxattr(path, name, value, 0) }

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }

// revParse resolves a ref with the real tool.
func revParse(t *testing.T, r *Repo, ref string) string {
	t.Helper()
	return strings.TrimSpace(testtool.RunOstree(t, "rev-parse", "--repo="+r.Path(), ref))
}
