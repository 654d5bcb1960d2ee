package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// cliEnv is a repository with v1 deployed and a registry serving the tag.
type cliEnv struct {
	t        *testing.T
	ctx      context.Context
	reg      *updatecachetest.Registry
	repo     string
	ref      string
	authfile string
	commit   string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	e := &cliEnv{t: t, ctx: ctx, reg: updatecachetest.NewRegistry(t), repo: updatecachetest.NewRepo(t)}
	e.ref = e.reg.Ref("os/base", "stable")
	e.authfile = filepath.Join(t.TempDir(), "auth.json")
	require.NoError(t, os.WriteFile(e.authfile, []byte("{}"), 0o600))
	v1 := e.image("1")
	e.push(v1)
	var err error
	e.commit, err = updatecachetest.Deploy(ctx, e.repo, e.ref, v1, "")
	require.NoError(t, err)
	return e
}

func (e *cliEnv) image(v string) *updatecachetest.Image {
	img, err := updatecachetest.NewImage(updatecachetest.ImageSpec{Version: v, Architecture: "amd64",
		Created: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Layers: []updatecachetest.Layer{
			{Files: []updatecachetest.File{{Path: "usr/lib/os-release", Content: []byte("ID=test\n"), Mode: 0o644}}},
			{Files: []updatecachetest.File{{Path: "usr/share/v", Content: []byte(v), Mode: 0o644}}},
		}})
	require.NoError(e.t, err)
	return img
}

func (e *cliEnv) push(img *updatecachetest.Image) {
	_, err := e.reg.Push(e.ctx, "os/base", "stable", img)
	require.NoError(e.t, err)
}

// netArgs are the flags that let the CLI reach the plain-HTTP test registry.
func (e *cliEnv) netArgs() []string {
	return []string{"--repo", e.repo, "--tls-verify=false", "--authfile", e.authfile}
}

func (e *cliEnv) run(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"check"},
		{"check", "a", "b"},
		{"status", "a", "b"},
		{"check", "--no-such-flag", "x"},
		{"check", "--platform", "linux", "docker://localhost/x:y"},
		{"clear"},
	} {
		var out, errOut bytes.Buffer
		assert.Equal(t, exitUsage, run(args, &out, &errOut), "%v: %s", args, errOut.String())
		assert.Contains(t, errOut.String(), "updatecache:")
	}
}

func TestCheckJSON(t *testing.T) {
	e := newCLIEnv(t)
	code, stdout, stderr := e.run(append([]string{"check", "--json"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	var noUpdate map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &noUpdate))
	assert.Equal(t, false, noUpdate["updateAvailable"])
	assert.Nil(t, noUpdate["cachedUpdate"])

	v2 := e.image("2")
	e.push(v2)
	code, stdout, stderr = e.run(append([]string{"check", "--json"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.ElementsMatch(t, []string{"image", "outcome", "updateAvailable", "persisted", "deployed", "cachedUpdate"}, mapKeys(res))
	assert.Equal(t, e.ref, res["image"])
	assert.Equal(t, true, res["updateAvailable"])
	assert.Equal(t, true, res["persisted"])
	deployed := res["deployed"].(map[string]any)
	assert.ElementsMatch(t, []string{"imageDigest", "version", "timestamp", "architecture", "mergeCommit"}, mapKeys(deployed))
	assert.Equal(t, e.commit, deployed["mergeCommit"])
	assert.Equal(t, "1", deployed["version"])
	cached := res["cachedUpdate"].(map[string]any)
	assert.ElementsMatch(t, []string{"imageDigest", "version", "timestamp", "architecture", "checkedAt", "manifestDiff", "toFetch"}, mapKeys(cached))
	assert.Equal(t, v2.ManifestDigest.String(), cached["imageDigest"])
	assert.Equal(t, "2", cached["version"])
	assert.Equal(t, "2026-03-04T05:06:07Z", cached["timestamp"])
	assert.Equal(t, "amd64", cached["architecture"])
	diff := cached["manifestDiff"].(map[string]any)
	assert.ElementsMatch(t, []string{"total", "totalSize", "nRemoved", "removedSize", "nAdded", "addedSize"}, mapKeys(diff))
	assert.Equal(t, float64(2), diff["total"])
	assert.Equal(t, float64(1), diff["nAdded"])
	assert.Equal(t, float64(v2.Layers[1].Size), diff["addedSize"])

	// status, offline, shows the same.
	code, stdout, stderr = e.run("status", "--json", "--repo", e.repo)
	require.Equal(t, 0, code, stderr)
	var st struct {
		Images []map[string]any `json:"images"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &st))
	require.Len(t, st.Images, 1)
	assert.Equal(t, e.ref, st.Images[0]["image"])
	assert.Equal(t, cached, st.Images[0]["cachedUpdate"])
	assert.Equal(t, deployed, st.Images[0]["deployed"])
}

func mapKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestCheckHumanOutput(t *testing.T) {
	e := newCLIEnv(t)
	code, stdout, stderr := e.run(append([]string{"check"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "No changes in: "+e.ref+"\n", stdout)

	v2 := e.image("2")
	e.push(v2)
	code, stdout, stderr = e.run(append([]string{"check"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "Update available for: "+e.ref+"\n  Version: 2\n  Digest: "+v2.ManifestDigest.String()+"\n")
	assert.Contains(t, stdout, "Added layers:     1")

	code, stdout, stderr = e.run("status", "--repo", e.repo, e.ref)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "Cached update (checked ")
	assert.Contains(t, stdout, "  Digest: "+v2.ManifestDigest.String())

	code, _, stderr = e.run("clear", "--repo", e.repo, e.ref)
	require.Equal(t, 0, code, stderr)
	code, stdout, _ = e.run("status", "--repo", e.repo, e.ref)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "No cached update.")
}

func TestErrorsExitOneWithOneLine(t *testing.T) {
	e := newCLIEnv(t)
	e.reg.Stop()
	for _, args := range [][]string{
		append(append([]string{"check"}, e.netArgs()...), e.ref),
		append(append([]string{"check", "--offline"}, e.netArgs()...), e.ref),
		{"status", "--repo", filepath.Join(t.TempDir(), "missing")},
		{"clear", "--repo", e.repo, "docker://localhost/not/deployed:x"},
	} {
		code, stdout, stderr := e.run(args...)
		assert.Equal(t, exitError, code, "%v", args)
		assert.Empty(t, stdout)
		assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		assert.True(t, strings.HasPrefix(stderr, "updatecache: "), stderr)
	}
}

// buildCLI builds the command into a temporary directory, for tests that run
// it in other namespaces, with the given build tags.
func buildCLI(t *testing.T, tags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "updatecache")
	cmd := exec.Command("go", "build", "-tags", strings.Join(tags, ","), "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// needUnshare returns the unshare path if the machine lets this process make
// the namespaces given by flags, else skips (fails when tools are required).
func needUnshare(t *testing.T, flags ...string) string {
	t.Helper()
	unshare := testtool.Need(t, "unshare", "util-linux")
	if out, err := exec.Command(unshare, append(flags, "true")...).CombinedOutput(); err != nil {
		msg := "unshare " + strings.Join(flags, " ") + " is not permitted here: " + strings.TrimSpace(string(out))
		if testtool.Required() {
			t.Fatal(msg)
		}
		t.Skip("skipping: " + msg)
	}
	return unshare
}

// TestStatusWithoutNetwork: after a check, status runs in a process with no
// network at all and shows the same update.
func TestStatusWithoutNetwork(t *testing.T) {
	unshare := needUnshare(t, "-n")
	bin := buildCLI(t)
	e := newCLIEnv(t)
	e.push(e.image("2"))
	code, online, stderr := e.run("check", "--json", "--tls-verify=false", "--authfile", e.authfile, "--repo", e.repo, e.ref)
	require.Equal(t, 0, code, stderr)

	out, err := exec.Command(unshare, "-n", bin, "status", "--json", "--repo", e.repo, e.ref).Output()
	require.NoError(t, err)
	var st struct {
		Images []struct {
			CachedUpdate json.RawMessage `json:"cachedUpdate"`
		} `json:"images"`
	}
	require.NoError(t, json.Unmarshal(out, &st))
	var checked struct {
		CachedUpdate json.RawMessage `json:"cachedUpdate"`
	}
	require.NoError(t, json.Unmarshal([]byte(online), &checked))
	require.Len(t, st.Images, 1)
	assert.JSONEq(t, string(checked.CachedUpdate), string(st.Images[0].CachedUpdate))

	// check itself, with no network, fails cleanly.
	cmd := exec.Command(unshare, "-n", bin, "check", "--tls-verify=false", "--authfile", e.authfile, "--repo", e.repo, e.ref)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err = cmd.Run()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, exitError, exitErr.ExitCode())
	assert.Contains(t, errOut.String(), "unavailable")
}

// TestReadOnlyRepository: on a read-only bind mount, check reports the update
// with persisted false and exit 0; status still works; nothing changes.
func TestReadOnlyRepository(t *testing.T) {
	unshare := needUnshare(t, "-m")
	bin := buildCLI(t)
	e := newCLIEnv(t)
	e.push(e.image("2"))
	inReadOnly := func(args ...string) ([]byte, error) {
		script := `mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"`
		return exec.Command(unshare, append([]string{"-m", "sh", "-c", script, e.repo, bin}, args...)...).Output()
	}
	out, err := inReadOnly("check", "--json", "--tls-verify=false", "--authfile", e.authfile, "--repo", e.repo, e.ref)
	require.NoError(t, err, "%s", out)
	var res struct {
		UpdateAvailable bool   `json:"updateAvailable"`
		Persisted       bool   `json:"persisted"`
		Reason          string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	assert.True(t, res.UpdateAvailable)
	assert.False(t, res.Persisted)
	assert.Contains(t, res.Reason, "read-only")

	out, err = inReadOnly("status", "--json", "--repo", e.repo)
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), `"cachedUpdate": null`)
}

func TestPullCommand(t *testing.T) {
	testtool.Ostree(t)
	e := newCLIEnv(t)
	v2 := e.image("2")
	e.push(v2)
	code, _, stderr := e.run(append([]string{"check"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	e.push(e.image("3"))

	code, stdout, stderr := e.run(append([]string{"pull", "--prepared"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "Layer 2/2 ")
	assert.Contains(t, stdout, "fetched")
	assert.Contains(t, stdout, "Deployed: "+e.ref+" (2 ("+v2.ManifestDigest.String()+"))")

	code, stdout, stderr = e.run(append([]string{"pull", "--json"}, append(e.netArgs(), e.ref)...)...)
	require.Equal(t, 0, code, stderr)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.Equal(t, "3", res["version"])
	assert.Equal(t, float64(1), res["layersReused"])
	testtool.RunOstree(t, "fsck", "--repo="+e.repo)
}

// TestDemo runs the README's main command as a user would, and again in a
// network namespace with no network at all.
func TestDemo(t *testing.T) {
	bin := buildCLI(t, "demo")
	out, err := exec.Command(bin, "demo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Every step behaved as stated.")
	for step := 1; step <= 5; step++ {
		assert.Contains(t, string(out), fmt.Sprintf("\n%d. ", step))
	}

	unshare := needUnshare(t, "-n")
	out, err = exec.Command(unshare, "-n", bin, "demo").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Every step behaved as stated.")
}

func TestPruneCommand(t *testing.T) {
	testtool.Ostree(t)
	e := newCLIEnv(t)
	for _, v := range []string{"2", "3"} {
		e.push(e.image(v))
		code, _, stderr := e.run(append([]string{"pull"}, append(e.netArgs(), e.ref)...)...)
		require.Equal(t, 0, code, stderr)
	}

	code, stdout, stderr := e.run("prune", "--dry-run", "--json", "--repo", e.repo)
	require.Equal(t, 0, code, stderr)
	var dry map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &dry))
	assert.Equal(t, true, dry["dryRun"])
	assert.Len(t, dry["refsDeleted"], 1, "v2's own layer")

	code, stdout, stderr = e.run("prune", "--repo", e.repo)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "Removed 1 refs and ")
	testtool.RunOstree(t, "fsck", "--repo="+e.repo)
}

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in   string
		want *imgspecv1.Platform // nil: an error
	}{
		{"linux/amd64", &imgspecv1.Platform{OS: "linux", Architecture: "amd64"}},
		{"linux/arm/v7", &imgspecv1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{"linux", nil},
		{"linux//v7", nil},
		{"linux/amd64/", nil},
		{"a/b/c/d", nil},
	}
	for _, tt := range tests {
		got, err := parsePlatform(tt.in)
		if tt.want == nil {
			assert.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
}

// TestProductBinaryHasNoTestCode: the command as shipped links neither the
// testing package nor the test kit's registries; only the demo build does.
func TestProductBinaryHasNoTestCode(t *testing.T) {
	testOnly := []string{"testing", "net/http/httptest", "github.com/google/go-containerregistry/pkg/registry",
		"github.com/osimage/updatecache/updatecachetest"}
	deps := func(tags string) []string {
		out, err := exec.Command("go", "list", "-tags", tags, "-deps", ".").Output()
		require.NoError(t, err)
		return strings.Fields(string(out))
	}
	product := deps("containers_image_openpgp")
	for _, p := range testOnly {
		assert.NotContains(t, product, p)
	}
	assert.Contains(t, deps("demo"), "github.com/osimage/updatecache/updatecachetest", "the demo build links the test kit")
}

// TestPullMaxLayerSize: --max-layer-size caps each layer's uncompressed
// size; a malformed size is a usage error.
func TestPullMaxLayerSize(t *testing.T) {
	e := newCLIEnv(t)
	e.push(e.image("2"))
	pull := func(size string) (int, string) {
		code, _, stderr := e.run(append([]string{"pull", "--max-layer-size", size}, append(e.netArgs(), e.ref)...)...)
		return code, stderr
	}
	code, stderr := pull("lots")
	assert.Equal(t, 2, code, stderr)
	code, stderr = pull("1KiB") // every layer's tar is at least 2 KiB
	assert.Equal(t, 1, code, stderr)
	assert.Contains(t, stderr, "over the size cap")
	code, stderr = pull("64MiB")
	assert.Equal(t, 0, code, stderr)
}
