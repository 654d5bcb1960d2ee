package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

func TestEscapeText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"41.20260301.3.0", "41.20260301.3.0"},
		{"Fedora CoreOS — été", "Fedora CoreOS — été"},
		{"a\x1b[2Kb", `a\x1b[2Kb`},
		{"one\ntwo\r", `one\ntwo\r`},
		{"tab\tdel\x7f", `tab\tdel\x7f`},
		{"c1 \u009b31m", `c1 \u009b31m`},
		{"rtl \u202egnp.exe", `rtl \u202egnp.exe`},
		{"zw\u200bj", `zw\u200bj`},
		{"ls\u2028ps\u2029", `ls\u2028ps\u2029`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
		{"real \ufffd kept", "real \ufffd kept"},
		{`back\slash`, `back\slash`},
	} {
		assert.Equal(t, tc.want, escapeText(tc.in), "%q", tc.in)
	}
}

// TestRegistryTextEscaped: a version label crafted to fake a line that
// the signature was accepted, and to hide the real lines with escape
// codes, prints as one inert line; so does a registry's error body on
// standard error. --json stays exact (its encoding escapes what it must).
func TestRegistryTextEscaped(t *testing.T) {
	const crafted = "41.2\x1b[2K\r  Signature: accepted by the policy\n\x1b[8m"
	e := newCLIEnv(t)
	v2, err := updatecachetest.NewImage(updatecachetest.ImageSpec{Version: crafted, Architecture: "amd64",
		Layers: []updatecachetest.Layer{{Files: []updatecachetest.File{{Path: "usr/lib/x", Content: []byte("x"), Mode: 0o644}}}}})
	require.NoError(t, err)
	e.push(v2)
	for _, args := range [][]string{append([]string{"check"}, append(e.netArgs(), e.ref)...), {"status", "--repo", e.repo}} {
		code, stdout, stderr := e.run(args...)
		require.Equal(t, 0, code, stderr)
		assert.NotContains(t, stdout, "\x1b", "%v", args)
		assert.NotContains(t, stdout, "\r", "%v", args)
		assert.NotContains(t, stdout, "\n  Signature:", "%v: a line of its own", args)
		assert.Contains(t, stdout, `  Version: 41.2\x1b[2K\r  Signature: accepted by the policy\n\x1b[8m`+"\n", "%v", args)
	}
	code, stdout, _ := e.run(append([]string{"check", "--json"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code)
	var res struct {
		CachedUpdate struct{ Version string } `json:"cachedUpdate"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.Equal(t, crafted, res.CachedUpdate.Version)

	e.reg.AddFault(updatecachetest.Fault{Method: http.MethodGet, Kind: updatecachetest.KindManifest, Status: http.StatusNotFound,
		Body: updatecachetest.ErrorBody("MANIFEST_UNKNOWN", "\x1b[1A\x1b[2K\rupdatecache: all good\n\x1b[8m")})
	code, _, stderr := e.run(append([]string{"pull"}, append(e.netArgs(), e.ref)...)...)
	assert.Equal(t, exitError, code)
	assert.NotContains(t, stderr, "\x1b")
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "%q", stderr)
	assert.Contains(t, stderr, `registry: manifest unknown: opening the image: \x1b[1A\x1b[2K\rupdatecache: all good\n\x1b[8m`+"\n")
}

// TestExitCodes: usage errors exit 2, whatever their kind; the opt-in 77
// says "nothing new" to scripts.
func TestExitCodes(t *testing.T) {
	e := newCLIEnv(t)
	net := func(args ...string) []string { return append(append(args, e.netArgs()...), e.ref) }
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"frobnicate"}, exitUsage},
		{[]string{}, exitUsage},
		{net("pull", "--jobs", "-1"), exitUsage},
		{net("pull", "--jobs", "0"), exitUsage},
		{net("check", "--command-timeout", "-1s"), exitUsage},
		{net("check", "--command-timeout", "soon"), exitUsage},
		{net("pull", "--progress-fd", "1"), exitUsage},
		{net("pull", "--progress-fd", "987"), exitUsage},
		{net("check", "--booted"), exitUsage},
		{net("check"), 0},
		{net("check", "--unchanged-exit-77"), exitUnchanged},
		{net("pull", "--prepared", "--unchanged-exit-77"), exitUnchanged},
		{net("pull", "--prepared"), exitError},
		{[]string{"--version"}, 0},
	} {
		code, _, stderr := e.run(tc.args...)
		assert.Equal(t, tc.code, code, "%v: %s", tc.args, stderr)
	}

	e.push(e.image("2"))
	code, _, stderr := e.run(net("check", "--unchanged-exit-77")...)
	assert.Equal(t, 0, code, "an update: %s", stderr)
	code, _, stderr = e.run(net("pull", "--prepared", "--unchanged-exit-77")...)
	assert.Equal(t, 0, code, stderr)
	code, stdout, stderr := e.run(net("pull", "--unchanged-exit-77")...)
	assert.Equal(t, exitUnchanged, code, stderr)
	assert.Contains(t, stdout, "Already deployed: ")
}

func TestVersion(t *testing.T) {
	code, stdout, _ := (&cliEnv{t: t}).run("--version")
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	require.Len(t, lines, 4, stdout)
	assert.True(t, strings.HasPrefix(lines[0], "updatecache "), lines[0])
	assert.Equal(t, "importer: "+updatecache.ImporterVersion, lines[1])
	assert.True(t, strings.HasPrefix(lines[2], "revision: "), lines[2])

	// A build from a checkout records its revision (go build stamps it,
	// unless -buildvcs=false).
	info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}}}
	assert.Equal(t, "updatecache v1.2.3\nimporter: "+updatecache.ImporterVersion+"\nrevision: 0123abcd (modified)\ngo: go1.26.8",
		describeBuild(info))
	assert.Contains(t, describeBuild(nil), "revision: unknown")
}

func TestClearOutput(t *testing.T) {
	e := newCLIEnv(t)
	v2 := e.image("2")
	e.push(v2)
	code, _, stderr := e.run(append([]string{"check"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	code, stdout, stderr := e.run("clear", "--json", "--repo", e.repo, e.ref)
	require.Equal(t, 0, code, stderr)
	var res struct {
		Image   string
		Cleared *struct{ ImageDigest string }
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.Equal(t, e.ref, res.Image)
	require.NotNil(t, res.Cleared)
	assert.Equal(t, v2.ManifestDigest.String(), res.Cleared.ImageDigest)

	code, stdout, _ = e.run("clear", "--json", "--repo", e.repo, e.ref)
	require.Equal(t, 0, code)
	assert.JSONEq(t, `{"image": "`+e.ref+`", "cleared": null}`, stdout)
	code, stdout, _ = e.run("clear", "--repo", e.repo, e.ref)
	require.Equal(t, 0, code)
	assert.Equal(t, "No cached update for: "+e.ref+"\n", stdout)
}

// TestBooted: --booted checks the image the booted deployment's origin
// follows, in the ostree-ext spelling rpm-ostree writes.
func TestBooted(t *testing.T) {
	e := newCLIEnv(t)
	root := t.TempDir()
	deployment := "ostree/deploy/os/deploy/" + e.commit + ".0"
	image := "ostree-unverified-registry:" + strings.TrimPrefix(e.ref, "docker://")
	for name, content := range map[string]string{
		"proc/cmdline":                         "rw ostree=/" + deployment + "\n",
		"sysroot/" + deployment + "/etc/issue": "",
		"sysroot/" + deployment + ".origin":    "[origin]\ncontainer-image-reference=" + image + "\n",
	} {
		p := filepath.Join(root, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	old := bootRoot
	bootRoot = root
	t.Cleanup(func() { bootRoot = old })
	code, stdout, stderr := e.run(append([]string{"check", "--booted"}, e.netArgs()...)...)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "No changes in: "+e.ref+"\n", stdout)
}

// TestCommandTimeout: a registry that accepts the connection and never
// answers ends check after --command-timeout, and check has a default.
func TestCommandTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn // accepted, never answered
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	e := newCLIEnv(t)
	ref := "docker://" + ln.Addr().String() + "/os/base:stable"
	start := time.Now()
	code, _, stderr := e.run("check", "--command-timeout", "2s", "--repo", e.repo, "--tls-verify=false", "--authfile", e.authfile, ref)
	took := time.Since(start)
	t.Logf("check against a registry that never answers, --command-timeout 2s: exit %d after %v", code, took.Round(time.Millisecond))
	assert.Equal(t, exitError, code)
	assert.Less(t, took, 4*time.Second)
	assert.GreaterOrEqual(t, took, 2*time.Second)
	assert.Contains(t, stderr, "registry: unavailable")
	assert.Contains(t, stderr, "hint: the command gave up after --command-timeout 2s")

	code, stdout, _ := e.run("check", "--help")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "(default 2m0s)")
}

// TestDryRunPruneIsAReader: prune --dry-run holds the repository lock
// shared, so it runs during a libostree transaction (where prune waits
// for its lock and times out) and as a user who may not write the
// repository.
func TestDryRunPruneIsAReader(t *testing.T) {
	testtool.Ostree(t)
	e := newCLIEnv(t)
	testtool.RunOstree(t, "config", "--repo="+e.repo, "set", "core.lock-timeout-secs", "2")
	testtool.HoldTransaction(t, e.repo)
	start := time.Now()
	code, _, stderr := e.run("prune", "--dry-run", "--repo", e.repo)
	assert.Equal(t, 0, code, stderr)
	assert.Less(t, time.Since(start), 2*time.Second)
	code, _, stderr = e.run("prune", "--repo", e.repo)
	assert.Equal(t, exitError, code)
	assert.Contains(t, stderr, "timed out waiting for repository lock")

	if os.Geteuid() != 0 {
		t.Skip("running as another user needs root")
	}
	bin := buildCLI(t)
	// The repository and the binary readable by nobody, writable by root only.
	for dir := e.repo; dir != "/"; dir = filepath.Dir(dir) {
		if strings.HasPrefix(dir, os.TempDir()+"/") {
			require.NoError(t, os.Chmod(dir, 0o755))
		}
	}
	for dir := bin; dir != "/"; dir = filepath.Dir(dir) {
		if strings.HasPrefix(dir, os.TempDir()+"/") {
			require.NoError(t, os.Chmod(dir, 0o755))
		}
	}
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := asNobody("prune", "--dry-run", "--repo", e.repo)
	assert.NoError(t, err, out)
	assert.Contains(t, out, "Would remove")
	out, err = asNobody("prune", "--repo", e.repo)
	assert.Error(t, err)
	assert.Contains(t, out, "read-only", out)
}
