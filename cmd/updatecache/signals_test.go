package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tmpLeft lists what is in the repository's tmp/ besides cache, as
// `ls <repo>/tmp` shows it.
func tmpLeft(t *testing.T, repo string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repo, "tmp"))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		if e.Name() != "cache" {
			names = append(names, e.Name())
		}
	}
	return names
}

// startPull starts the built command pulling through a throttled
// registry, with --progress-fd on fd 3, and returns once bytes flow.
func startPull(t *testing.T, e *cliEnv, bin string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	cmd := exec.Command(bin, append([]string{"pull", "--progress-fd", "3"}, append(e.netArgs(), e.ref)...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{w}
	require.NoError(t, cmd.Start())
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); r.Close() })
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev progressEvent
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev))
		if ev.Type == "ProgressBytes" && ev.Bytes > 0 {
			return cmd, &stderr
		}
	}
	t.Fatalf("the pull sent no bytes: %s", stderr.String())
	return nil, nil
}

// TestInterruptedPullLeavesNothing: SIGINT or SIGTERM in the middle of a
// pull cancels it through its context; it exits 130 or 143 with one line
// on standard error, and the repository's tmp/ holds nothing (it used to
// keep the staging directory, 817 MB after one Ctrl-C). A SIGKILL, which
// nothing can clean up after, leaves its staging directory; the next pull
// removes it, and so would prune.
func TestInterruptedPullLeavesNothing(t *testing.T) {
	bin := buildCLI(t)
	e, _ := throttledEnv(t, 400<<10, 100_000)
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		cmd, stderr := startPull(t, e, bin)
		start := time.Now()
		require.NoError(t, cmd.Process.Signal(tc.sig))
		err := cmd.Wait()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		assert.Equal(t, tc.code, exit.ExitCode(), "%v: %s", tc.sig, stderr)
		assert.Equal(t, "updatecache: pull interrupted by "+map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[tc.sig]+"\n", stderr.String())
		t.Logf("%v: exit %d after %v", tc.sig, exit.ExitCode(), time.Since(start).Round(time.Millisecond))
		assert.Less(t, time.Since(start), 5*time.Second, "%v took long to end the pull", tc.sig)
		assert.Empty(t, tmpLeft(t, e.repo), "after %v", tc.sig)
		fsck(t, e.repo)
	}

	cmd, _ := startPull(t, e, bin)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	left := tmpLeft(t, e.repo)
	assert.NotEmpty(t, left, "a SIGKILL leaves its staging directory")
	code, stdout, stderr := e.run("prune", "--dry-run", "--json", "--repo", e.repo)
	require.Equal(t, 0, code, stderr)
	var dry pruneResultJSON
	require.NoError(t, json.Unmarshal([]byte(stdout), &dry))
	dirs := slices.DeleteFunc(slices.Clone(left), func(name string) bool { return strings.HasSuffix(name, "-lock") })
	assert.ElementsMatch(t, dirs, dry.TmpRemoved, "a prune would remove the staging directories (with their locks)")

	e.reg.ClearFaults()
	code, _, stderr = e.run(append([]string{"pull"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	assert.Empty(t, tmpLeft(t, e.repo), "the next pull expires the killed one's staging directory")
	fsck(t, e.repo)
}
