package ostree

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
)

// tmpEntries lists tmp/, sorted.
func tmpEntries(t *testing.T, r *Repo) []string {
	t.Helper()
	entries, err := os.ReadDir(r.tmpDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// writeTmp makes tmp/name holding size bytes, dated age ago (a directory
// holding such a file when dir is set).
func writeTmp(t *testing.T, r *Repo, name string, size int, age time.Duration, dir bool) {
	t.Helper()
	p := filepath.Join(r.tmpDir(), name)
	file := p
	if dir {
		if err := os.MkdirAll(filepath.Join(p, "ab"), 0o755); err != nil {
			t.Fatal(err)
		}
		file = filepath.Join(p, "ab", strings.Repeat("c", 62)+".file")
	}
	if err := os.WriteFile(file, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	for _, q := range []string{file, p} {
		if err := os.Chtimes(q, when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// abandonStage ends a Stage as a killed process would: its directory and
// lock file stay, its locks are released.
func abandonStage(t *testing.T, s *Stage) string {
	t.Helper()
	s.unlockDir()
	s.unlockRepo()
	return filepath.Base(s.dir)
}

func TestExpireTmp(t *testing.T) {
	ctx := context.Background()
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	const day = 24 * time.Hour
	// Removed: staging directories nobody holds, of another boot and of
	// this one, a lock file without its directory, and an old temporary file.
	writeTmp(t, r, "staging-00000000-0000-0000-0000-000000000000-AAAAAA", 1000, time.Minute, true)
	writeTmp(t, r, "staging-00000000-0000-0000-0000-000000000000-AAAAAA-lock", 0, time.Minute, false)
	writeTmp(t, r, "staging-00000000-0000-0000-0000-000000000000-BBBBBB-lock", 0, time.Minute, false)
	writeTmp(t, r, ".tmp-old", 300, 2*day, false)
	killed, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := killed.WriteContent(ctx, FileMeta{Mode: ModeRegular | 0o644}, 5, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	killedDir := abandonStage(t, killed)
	// Kept: a staging directory in use, a young temporary file, one dated
	// in the future, a directory that is not a staging one, and cache.
	live, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	writeTmp(t, r, ".tmp-young", 10, time.Hour, false)
	writeTmp(t, r, ".tmp-future", 10, -time.Hour, false)
	writeTmp(t, r, "checkout-young", 10, time.Hour, true)
	if err := os.MkdirAll(filepath.Join(r.tmpDir(), "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The live stage's BeginStage has already expired what it could.
	before := tmpEntries(t, r)
	for _, gone := range []string{killedDir, "staging-00000000-0000-0000-0000-000000000000-AAAAAA", ".tmp-old"} {
		if slices.Contains(before, gone) {
			t.Errorf("BeginStage left %s in tmp/: %v", gone, before)
		}
	}
	writeTmp(t, r, "staging-00000000-0000-0000-0000-000000000000-CCCCCC", 2000, time.Minute, true)
	writeTmp(t, r, ".tmp-old2", 300, 2*day, false)
	before = tmpEntries(t, r)

	dry, err := r.ExpireTmp(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if after := tmpEntries(t, r); !slices.Equal(after, before) {
		t.Errorf("dry run changed tmp/:\nbefore %v\nafter  %v", before, after)
	}
	stats, err := r.ExpireTmp(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	wantRemoved := []string{".tmp-old2", "staging-00000000-0000-0000-0000-000000000000-CCCCCC"}
	for _, st := range []*TmpStats{dry, stats} {
		if got := slices.Sorted(slices.Values(st.Removed)); !slices.Equal(got, wantRemoved) || st.Bytes != 2300 {
			t.Errorf("removed %v (%d bytes); want %v (2300 bytes)", got, st.Bytes, wantRemoved)
		}
	}
	after := tmpEntries(t, r)
	want := []string{".tmp-future", ".tmp-young", "cache", "checkout-young", filepath.Base(live.dir), filepath.Base(live.dir) + "-lock"}
	slices.Sort(want)
	if !slices.Equal(after, want) {
		t.Errorf("tmp/ after expiry: %v; want %v", after, want)
	}

	// core.tmp-expiry-secs shortens the age rule.
	testtool.RunOstree(t, "config", "--repo="+r.Path(), "set", "core.tmp-expiry-secs", "60")
	r2, err := Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if stats, err := r2.ExpireTmp(ctx, false); err != nil || !slices.Contains(stats.Removed, ".tmp-young") {
		t.Errorf("with core.tmp-expiry-secs=60: %v, %v; want .tmp-young removed", stats, err)
	}
	if err := os.WriteFile(filepath.Join(r.Path(), "config"), []byte("[core]\nrepo_version=1\nmode=archive-z2\ntmp-expiry-secs=soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(r.Path()); err == nil {
		t.Error("Open accepted core.tmp-expiry-secs=soon")
	}
}

// TestLibostreeAndOurStagingDirectories: a staging directory libostree's
// transaction holds is left alone; one we abandoned (a killed pull) is
// one libostree itself takes up and commits from (its objects are whole,
// fsck passes) or, after it, expires.
func TestLibostreeAndOurStagingDirectories(t *testing.T) {
	ctx := context.Background()
	r := ostreeRepo(t)
	release := testtool.HoldTransaction(t, r.Path())
	var theirs string
	for _, name := range tmpEntries(t, r) {
		if strings.HasPrefix(name, stagingPrefix) && !strings.HasSuffix(name, "-lock") {
			theirs = name
		}
	}
	if theirs == "" {
		t.Fatalf("no libostree staging directory in tmp/: %v", tmpEntries(t, r))
	}
	if stats, err := r.ExpireTmp(ctx, false); err != nil || len(stats.Removed) > 0 {
		t.Errorf("ExpireTmp during a libostree transaction removed %v, %v", stats.Removed, err)
	}
	release()

	// Our abandoned stage (BeginStage has expired libostree's aborted one),
	// with objects staged of both size classes.
	s, err := r.BeginStage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var staged []string
	for _, size := range []int{5, smallContentSize + 1} {
		content := strings.Repeat("x", size)
		sum, err := s.WriteContent(ctx, FileMeta{Mode: ModeRegular | 0o644}, int64(size), strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		staged = append(staged, sum)
	}
	abandonStage(t, s)
	ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main")
	for _, sum := range staged {
		if ok, err := r.HasObject(sum, ObjectFileZ); !ok || err != nil {
			t.Errorf("libostree's commit did not take up our staged object %s: %v, %v", sum, ok, err)
		}
	}
	testtool.RunOstree(t, "fsck", "--repo="+r.Path())
	if _, err := r.ExpireTmp(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, name := range tmpEntries(t, r) {
		if strings.HasPrefix(name, stagingPrefix) {
			t.Errorf("left in tmp/ after a libostree commit and ExpireTmp: %s", name)
		}
	}
}
