package ostree

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
)

func TestOpenRepositoriesMadeByOstree(t *testing.T) {
	testtool.Ostree(t)
	for _, tc := range []struct {
		initMode string
		want     Mode
	}{
		{"bare", ModeBare},
		{"bare-user", ModeBareUser},
		{"bare-user-only", ModeBareUserOnly},
		{"archive", ModeArchive},
		{"archive-z2", ModeArchive},
		{"bare-split-xattrs", ModeBareSplitXattrs},
	} {
		t.Run(tc.initMode, func(t *testing.T) {
			r, err := Open(ostreeInit(t, tc.initMode))
			if err != nil {
				t.Fatal(err)
			}
			if r.Mode() != tc.want || r.LockTimeout() != 30*time.Second {
				t.Errorf("Mode, LockTimeout = %q, %v; want %q, 30s", r.Mode(), r.LockTimeout(), tc.want)
			}
		})
	}
}

func TestCreateMatchesOstreeInit(t *testing.T) {
	testtool.Ostree(t)
	for _, mode := range []Mode{ModeBare, ModeBareUser, ModeBareUserOnly, ModeArchive, ModeBareSplitXattrs} {
		t.Run(string(mode), func(t *testing.T) {
			ours := filepath.Join(t.TempDir(), "repo")
			r, err := Create(ours, mode)
			if err != nil {
				t.Fatal(err)
			}
			if r.Mode() != mode || r.Path() != ours {
				t.Errorf("Create: Mode, Path = %q, %q", r.Mode(), r.Path())
			}
			if _, err := Create(ours, mode); !errors.Is(err, ErrRepositoryExists) {
				t.Errorf("Create over an existing repo: %v; want ErrRepositoryExists", err)
			}
			theirs := ostreeInit(t, string(mode))
			if got, want := listTree(t, ours), listTree(t, theirs); got != want {
				t.Errorf("layout differs from ostree init:\nours:\n%s\ntheirs:\n%s", got, want)
			}
			for _, p := range []string{ours, theirs} {
				if got := testtool.RunOstree(t, "config", "--repo="+p, "get", "core.mode"); strings.TrimSpace(got) != string(mode) {
					t.Errorf("ostree config get core.mode in %s = %q", p, got)
				}
			}
			if mode == ModeBareSplitXattrs {
				// libostree 2022.7 opens but refuses to write content here.
				return
			}
			// The real tool can write into what we created.
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			testtool.RunOstree(t, "commit", "--repo="+ours, "-b", "main", "--tree=dir="+src)
			testtool.RunOstree(t, "fsck", "--repo="+ours)
		})
	}
}

// listTree lists the directories and files under root with their
// permissions, one per line, relative to root.
func listTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b.WriteString(info.Mode().String() + " " + rel + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestCreateRejectsUnknownMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	for _, m := range []Mode{"", "foo", "Bare"} {
		if _, err := Create(dir, m); !errors.Is(err, ErrUnsupportedMode) {
			t.Errorf("Create(%q): %v; want ErrUnsupportedMode", m, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Create left %s behind: %v", dir, err)
	}
}

func TestOpenConfig(t *testing.T) {
	tests := []struct {
		name    string
		config  string // "" with noConfig: no config file
		noObj   bool
		wantErr error
		mode    Mode
		timeout time.Duration
	}{
		{name: "minimal", config: "[core]\nrepo_version=1\n", mode: ModeBare, timeout: 30 * time.Second},
		{name: "archive alias", config: "[core]\nrepo_version=1\nmode=archive\n", mode: ModeArchive, timeout: 30 * time.Second},
		{name: "whitespace and comments", config: "# c\n  [core]\n\n  repo_version = 1\r\n mode =bare-user\n[remote \"x\"]\nurl=file:///x\n", mode: ModeBareUser, timeout: 30 * time.Second},
		{name: "lock timeout", config: "[core]\nrepo_version=1\nlock-timeout-secs=2\n", mode: ModeBare, timeout: 2 * time.Second},
		{name: "lock timeout infinite", config: "[core]\nrepo_version=1\nlock-timeout-secs=-1\n", mode: ModeBare, timeout: -1},
		{name: "other group's keys ignored", config: "[core]\nrepo_version=1\n[x]\nrepo_version=2\nmode=foo\n", mode: ModeBare, timeout: 30 * time.Second},
		{name: "repo_version=2", config: "[core]\nrepo_version=2\nmode=bare\n", wantErr: ErrUnsupportedRepoVersion},
		{name: "repo_version trailing space", config: "[core]\nrepo_version=1 \n", wantErr: ErrUnsupportedRepoVersion},
		{name: "no repo_version", config: "[core]\nmode=bare\n", wantErr: ErrUnsupportedRepoVersion},
		{name: "mode=foo", config: "[core]\nrepo_version=1\nmode=foo\n", wantErr: ErrUnsupportedMode},
		{name: "missing objects", config: "[core]\nrepo_version=1\n", noObj: true, wantErr: ErrNotRepository},
		{name: "garbage line", config: "[core]\nrepo_version=1\ngarbage\n", wantErr: ErrCorrupt},
		{name: "key outside group", config: "repo_version=1\n", wantErr: ErrCorrupt},
		{name: "unterminated group", config: "[core\nrepo_version=1\n", wantErr: ErrCorrupt},
		{name: "bad lock timeout", config: "[core]\nrepo_version=1\nlock-timeout-secs=abc\n", wantErr: ErrCorrupt},
		{name: "lock timeout below -1", config: "[core]\nrepo_version=1\nlock-timeout-secs=-2\n", wantErr: ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if !tc.noObj {
				if err := os.Mkdir(filepath.Join(dir, "objects"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(dir)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open: %v; want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Mode() != tc.mode || r.LockTimeout() != tc.timeout {
				t.Errorf("Mode, LockTimeout = %q, %v; want %q, %v", r.Mode(), r.LockTimeout(), tc.mode, tc.timeout)
			}
		})
	}
}

func TestOpenMissingAndOversizedConfig(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, ErrNotRepository) {
		t.Errorf("Open of a missing dir: %v; want ErrNotRepository", err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrCorrupt) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open without config: %v; want ErrCorrupt wrapping ErrNotExist", err)
	}
	big := "[core]\nrepo_version=1\n#" + strings.Repeat("x", maxConfigSize) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrTooLarge) {
		t.Errorf("Open with a huge config: %v; want ErrCorrupt and ErrTooLarge", err)
	}
}
