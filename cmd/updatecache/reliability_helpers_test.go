package main

// Helpers shared by the reliability tests (crash_test.go,
// concurrency_test.go, disk_test.go): running the built command as a
// process that may be killed, and checking a repository afterwards with the
// real ostree tool and with this module's strict GVariant decoder.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache/internal/gvariant"
	"github.com/osimage/updatecache/internal/keys"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/internal/testtool"
)

// longEnv selects the long versions of the reliability tests.
const longEnv = "UPDATECACHE_LONG"

// sized returns ci, or long when UPDATECACHE_LONG=1.
func sized[T any](ci, long T) T {
	if os.Getenv(longEnv) == "1" {
		return long
	}
	return ci
}

// newLongCLIEnv is newCLIEnv with a deadline of d for the registry pushes
// the test makes, instead of newCLIEnv's minute.
func newLongCLIEnv(t *testing.T, d time.Duration) *cliEnv {
	t.Helper()
	e := newCLIEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	e.ctx = ctx
	return e
}

// checkArgs and pullArgs are the command lines of check and pull for e.
func (e *cliEnv) checkArgs() []string {
	return append(append([]string{"check"}, e.netArgs()...), e.ref)
}

func (e *cliEnv) pullArgs() []string {
	return append(append([]string{"pull"}, e.netArgs()...), e.ref)
}

func (e *cliEnv) clearArgs() []string { return []string{"clear", "--repo", e.repo, e.ref} }

// procExit is how a run of the command ended.
type procExit struct {
	code   int  // exit status, -1 when killed
	killed bool // ended by our SIGKILL, not by itself
	stdout string
	stderr string
	took   time.Duration
}

// runBin runs the built command to completion.
func runBin(ctx context.Context, bin string, args ...string) procExit {
	return runBinKilledAfter(ctx, bin, -1, args...)
}

// runBinKilledAfter runs the built command and SIGKILLs it delay after
// starting it, unless it has exited by then; a negative delay never kills.
func runBinKilledAfter(ctx context.Context, bin string, delay time.Duration, args ...string) procExit {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return procExit{code: -1, stderr: err.Error()}
	}
	if delay >= 0 {
		// Signalling a process that has been waited for is a harmless
		// ErrProcessDone (os.Process uses a pidfd, so no pid is reused).
		timer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	_ = cmd.Wait()
	res := procExit{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		res.killed = true
	}
	return res
}

// fsck runs the real ostree fsck over the repository, failing t on any error.
func fsck(t *testing.T, repo string) {
	t.Helper()
	testtool.RunOstree(t, "fsck", "--repo="+repo)
}

// revParse resolves ref with the real ostree tool.
func revParse(t *testing.T, repo, ref string) string {
	t.Helper()
	return strings.TrimSpace(testtool.RunOstree(t, "rev-parse", "--repo="+repo, ref))
}

// imageRef is the ref of e's image, as ostree-ext names it.
func (e *cliEnv) imageRef(t *testing.T) string {
	t.Helper()
	ref, err := ostree.ImageRefName(e.ref)
	require.NoError(t, err)
	return ref
}

// deployedDigest returns the manifest digest of the merge commit the
// image's ref points to, read by the real ostree tool, with that commit.
func (e *cliEnv) deployedDigest(t *testing.T) (d, commit string) {
	t.Helper()
	commit = revParse(t, e.repo, e.imageRef(t))
	out := testtool.RunOstree(t, "show", "--repo="+e.repo, "--print-metadata-key=ostree.manifest-digest", commit)
	return unquote(t, out), commit
}

// unquote reads a GVariant string printed by ostree ('…').
func unquote(t *testing.T, printed string) string {
	t.Helper()
	s := strings.TrimSpace(printed)
	require.True(t, len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'', "not a printed GVariant string: %q", printed)
	return s[1 : len(s)-1]
}

// detachedKey asks the real ostree tool for a detached metadata key of
// commit: its printed value, or ok false when libostree reports the key or
// the whole detached metadata as absent. Any other failure fails t.
func detachedKey(t *testing.T, repo, commit, key string) (value string, ok bool) {
	t.Helper()
	out, err := testtool.OstreeCommand(t, "show", "--repo="+repo, "--print-detached-metadata-key="+key, commit).Output()
	if err == nil {
		return unquote(t, string(out)), true
	}
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "ostree show --print-detached-metadata-key=%s %s", key, commit)
	stderr := string(ee.Stderr)
	require.True(t, ee.ExitCode() == 1 && (strings.Contains(stderr, "No such metadata key") || strings.Contains(stderr, "No detached metadata")),
		"ostree show --print-detached-metadata-key=%s %s: exit %d: %s", key, commit, ee.ExitCode(), stderr)
	return "", false
}

// commitmetaPath is where commit's detached metadata lives.
func commitmetaPath(repo, commit string) string {
	return filepath.Join(repo, "objects", commit[:2], commit[2:]+".commitmeta")
}

// readCommitmeta returns the bytes of commit's .commitmeta, nil when absent.
func readCommitmeta(t *testing.T, repo, commit string) []byte {
	t.Helper()
	data, err := os.ReadFile(commitmetaPath(repo, commit))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	return data
}

// cachedDigest checks the cached update on commit and returns its manifest
// digest ("" when none is cached). libostree must read the detached
// metadata and agree on the digest; the file must be normal-form GVariant
// (our decoder is stricter than libostree, which reads garbage as empty);
// and the update must be whole: the manifest's bytes hash to the digest and
// the config's bytes to the manifest's config digest, or no cached key is
// present at all.
func cachedDigest(t *testing.T, repo, commit string) string {
	t.Helper()
	printed, ok := detachedKey(t, repo, commit, keys.CachedManifestDigest)
	md, err := gvariant.UnmarshalVarDict(readCommitmeta(t, repo, commit))
	require.NoError(t, err, "detached metadata of %s", commit)
	d, present, err := md.LookupString(keys.CachedManifestDigest)
	require.NoError(t, err)
	require.Equal(t, ok, present, "libostree and our decoder disagree on %s", keys.CachedManifestDigest)
	if !present {
		for _, entry := range md {
			require.NotContains(t, keys.CachedUpdate, entry.Key, "cached key %s without %s", entry.Key, keys.CachedManifestDigest)
		}
		return ""
	}
	require.Equal(t, printed, d)
	manifest, ok, err := md.LookupString(keys.CachedManifest)
	require.True(t, ok && err == nil, "%s: %v", keys.CachedManifest, err)
	config, ok, err := md.LookupString(keys.CachedConfig)
	require.True(t, ok && err == nil, "%s: %v", keys.CachedConfig, err)
	require.Equal(t, d, digest.FromString(manifest).String(), "cached manifest does not hash to the cached digest")
	var m struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
	}
	require.NoError(t, json.Unmarshal([]byte(manifest), &m))
	require.Equal(t, m.Config.Digest, digest.FromString(config).String(), "cached config is not the manifest's config")
	return d
}

// tempFilesIn lists the temporary files (.tmp-*) under dir.
func tempFilesIn(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			found = append(found, path)
		}
		return nil
	})
	require.NoError(t, err)
	return found
}
