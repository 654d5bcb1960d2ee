package updatecache_test

import (
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/ostree"
	"github.com/osimage/updatecache/updatecachetest"
)

// rootSentinels are every exported error of the package; TestRootSentinelsListed
// keeps the list whole.
var rootSentinels = map[string]error{
	"ErrOffline": updatecache.ErrOffline, "ErrNotDeployed": updatecache.ErrNotDeployed,
	"ErrCorruptCache": updatecache.ErrCorruptCache, "ErrInvalidMetadata": updatecache.ErrInvalidMetadata,
	"ErrInvalidReference": updatecache.ErrInvalidReference, "ErrNoCachedUpdate": updatecache.ErrNoCachedUpdate,
	"ErrPreparedUpdateGone": updatecache.ErrPreparedUpdateGone, "ErrInvalidLayer": updatecache.ErrInvalidLayer,
	"ErrRemoteVerification": updatecache.ErrRemoteVerification, "ErrUnsupportedImage": updatecache.ErrUnsupportedImage,
	"ErrSELinuxPolicy":   updatecache.ErrSELinuxPolicy,
	"ErrManifestUnknown": updatecache.ErrManifestUnknown, "ErrUnauthorized": updatecache.ErrUnauthorized,
	"ErrRateLimited": updatecache.ErrRateLimited, "ErrUnavailable": updatecache.ErrUnavailable,
	"ErrConfig": updatecache.ErrConfig, "ErrBlocked": updatecache.ErrBlocked, "ErrInsecureRedirect": updatecache.ErrInsecureRedirect, "ErrDigestMismatch": updatecache.ErrDigestMismatch,
	"ErrTooLarge": updatecache.ErrTooLarge, "ErrUnsupportedManifest": updatecache.ErrUnsupportedManifest,
	"ErrNoMatchingPlatform": updatecache.ErrNoMatchingPlatform, "ErrMalformed": updatecache.ErrMalformed,
	"ErrPolicyRejected": updatecache.ErrPolicyRejected, "ErrPolicyInvalid": updatecache.ErrPolicyInvalid,
	"ErrPolicyUnsupported": updatecache.ErrPolicyUnsupported, "ErrNotRepository": updatecache.ErrNotRepository,
	"ErrUnsupportedRepoVersion": updatecache.ErrUnsupportedRepoVersion, "ErrUnsupportedRepoMode": updatecache.ErrUnsupportedRepoMode,
	"ErrCorruptRepo": updatecache.ErrCorruptRepo, "ErrLockTimeout": updatecache.ErrLockTimeout,
	"ErrReadOnly": updatecache.ErrReadOnly, "ErrRepoIO": updatecache.ErrRepoIO, "ErrMissingObject": updatecache.ErrMissingObject,
	"ErrNotBooted": updatecache.ErrNotBooted,
}

// TestRootSentinelsListed: rootSentinels names every exported Err… variable
// of the package, so the contract test below cannot miss a new one.
func TestRootSentinelsListed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	require.NoError(t, err)
	var declared []string
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
			for _, s := range g.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					if n.IsExported() && strings.HasPrefix(n.Name, "Err") {
						declared = append(declared, n.Name)
					}
				}
			}
		}
	}
	var listed []string
	for name := range rootSentinels {
		listed = append(listed, name)
	}
	assert.ElementsMatch(t, declared, listed)
}

// tempPath matches a test's temporary directory and hexRun a checksum
// (62 digits in an object's path): the length of a message's prose leaves
// them out.
var (
	tempPath = regexp.MustCompile(`/tmp/Test[^/]*/[0-9]+/`)
	hexRun   = regexp.MustCompile(`[0-9a-f]{62,64}`)
)

// digestPattern matches a sha256 digest, as messages name blobs.
var digestPattern = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// matchedSentinels names the root sentinels err wraps.
func matchedSentinels(err error) []string {
	var names []string
	for name, s := range rootSentinels {
		if errors.Is(err, s) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// TestErrorContract drives every exported operation through its failure
// kinds: each error must wrap the root sentinel that names its kind, and
// its message must not repeat a package's prefix.
func TestErrorContract(t *testing.T) {
	tests := []struct {
		name string
		want error
		run  func(t *testing.T, e *contractEnv) error
	}{
		// OpenRepo
		{"OpenRepo: no repository", updatecache.ErrNotRepository, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.OpenRepo(t.TempDir())
			return err
		}},
		{"OpenRepo: repo_version 2", updatecache.ErrUnsupportedRepoVersion, func(t *testing.T, e *contractEnv) error {
			return openWithConfig(t, "[core]\nrepo_version=2\nmode=archive-z2\n")
		}},
		{"OpenRepo: unknown mode", updatecache.ErrUnsupportedRepoMode, func(t *testing.T, e *contractEnv) error {
			return openWithConfig(t, "[core]\nrepo_version=1\nmode=fancy\n")
		}},
		{"OpenRepo: config garbage", updatecache.ErrCorruptRepo, func(t *testing.T, e *contractEnv) error {
			return openWithConfig(t, "\x00garbage")
		}},

		// Prepare
		{"Prepare: no transport", updatecache.ErrInvalidReference, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.Prepare(e.ctx, e.repo, "quay.io/x/y:z", e.options())
			return err
		}},
		{"Prepare: unknown transport", updatecache.ErrInvalidReference, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.Prepare(e.ctx, e.repo, "nope:quay.io/x/y:z", e.options())
			return err
		}},
		{"Prepare: offline", updatecache.ErrOffline, func(t *testing.T, e *contractEnv) error {
			o := e.options()
			o.Offline = true
			_, err := updatecache.Prepare(e.ctx, e.repo, e.ref, o)
			return err
		}},
		{"Prepare: registry gone", updatecache.ErrUnavailable, func(t *testing.T, e *contractEnv) error {
			e.reg.Stop()
			_, err := e.prepare()
			return err
		}},
		{"Prepare: tag unknown", updatecache.ErrManifestUnknown, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.Prepare(e.ctx, e.repo, e.reg.Ref("os/base", "missing"), e.options())
			return err
		}},
		{"Prepare: refused credentials", updatecache.ErrUnauthorized, func(t *testing.T, e *contractEnv) error {
			e.reg.AddFault(updatecachetest.Fault{Status: 401})
			_, err := e.prepare()
			return err
		}},
		{"Prepare: lying registry", updatecache.ErrDigestMismatch, func(t *testing.T, e *contractEnv) error {
			e.push(image(t, "2"))
			e.reg.AddFault(updatecachetest.Fault{Method: "GET", Kind: updatecachetest.KindManifest, Corrupt: true})
			_, err := e.prepare()
			return err
		}},
		{"Prepare: manifest over the cap", updatecache.ErrTooLarge, func(t *testing.T, e *contractEnv) error {
			e.push(image(t, "2"))
			o := e.options()
			o.MaxManifestSize = 16
			_, err := updatecache.Prepare(e.ctx, e.repo, e.ref, o)
			return err
		}},
		{"Prepare: registries.d is a file", updatecache.ErrConfig, func(t *testing.T, e *contractEnv) error {
			e.sys.RegistriesDirPath = writeFile(t, "registries.d", "not a directory")
			_, err := e.prepare()
			return err
		}},
		{"Prepare: registries.conf garbage", updatecache.ErrConfig, func(t *testing.T, e *contractEnv) error {
			e.sys.SystemRegistriesConfPath = writeFile(t, "registries.conf", "[[[registry")
			_, err := e.prepare()
			return err
		}},
		{"Prepare: auth file garbage", updatecache.ErrConfig, func(t *testing.T, e *contractEnv) error {
			e.sys.AuthFilePath = writeFile(t, "auth.json", "{")
			_, err := e.prepare()
			return err
		}},
		{"Prepare: policy file missing", nil, func(t *testing.T, e *contractEnv) error {
			e.push(image(t, "2"))
			o := e.options()
			o.VerifySignatures, o.SignaturePolicyPath = true, filepath.Join(t.TempDir(), "missing.json")
			_, err := updatecache.Prepare(e.ctx, e.repo, e.ref, o)
			// ErrPolicyInvalid with the openpgp build tag, else ErrPolicyUnsupported.
			if !errors.Is(err, updatecache.ErrPolicyInvalid) {
				require.ErrorIs(t, err, updatecache.ErrPolicyUnsupported)
			}
			return err
		}},
		{"Prepare: corrupt cache", updatecache.ErrCorruptCache, func(t *testing.T, e *contractEnv) error {
			require.NoError(t, os.WriteFile(e.commitmetaPath(e.deployed), []byte("\x01garbage"), 0o644))
			_, err := e.prepare()
			return err
		}},
		{"Prepare: merge commit without image metadata", updatecache.ErrInvalidMetadata, func(t *testing.T, e *contractEnv) error {
			e.setRef(t, plainCommit(t, e))
			_, err := e.prepare()
			return err
		}},
		{"Prepare: repository locked", updatecache.ErrLockTimeout, func(t *testing.T, e *contractEnv) error {
			e.push(image(t, "2"))
			e.holdLock(t)
			_, err := e.prepare()
			return err
		}},
		{"Prepare: file size limit while caching", updatecache.ErrRepoIO, func(t *testing.T, e *contractEnv) error {
			e.push(image(t, "2"))
			var err error
			withFileSizeLimit(t, 1024, func() { _, err = e.prepare() })
			require.ErrorIs(t, err, unix.EFBIG)
			return err
		}},

		// Queries
		{"QueryImage: invalid reference", updatecache.ErrInvalidReference, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.QueryImage(e.repo, "docker://UPPER/case")
			return err
		}},
		{"QueryCommit: not a checksum", updatecache.ErrInvalidReference, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.QueryCommit(e.repo, "abc")
			return err
		}},
		{"QueryCommit: no such commit", updatecache.ErrMissingObject, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.QueryCommit(e.repo, strings.Repeat("ab", 32))
			return err
		}},
		{"QueryCommit: corrupt commit object", updatecache.ErrCorruptRepo, func(t *testing.T, e *contractEnv) error {
			p := filepath.Join(e.repoPath, "objects", e.deployed[:2], e.deployed[2:]+".commit")
			require.NoError(t, os.WriteFile(p, []byte("garbage"), 0o644))
			_, err := updatecache.QueryCommit(e.repo, e.deployed)
			return err
		}},
		{"QueryCachedUpdate: nothing deployed", updatecache.ErrNotDeployed, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.QueryCachedUpdate(e.repo, e.reg.Ref("os/other", "stable"))
			return err
		}},
		{"QueryCachedUpdate: corrupt cache", updatecache.ErrCorruptCache, func(t *testing.T, e *contractEnv) error {
			require.NoError(t, os.WriteFile(e.commitmetaPath(e.deployed), []byte("\x01garbage"), 0o644))
			_, err := updatecache.QueryCachedUpdate(e.repo, e.ref)
			return err
		}},
		{"ListImages: corrupt cache", updatecache.ErrCorruptCache, func(t *testing.T, e *contractEnv) error {
			require.NoError(t, os.WriteFile(e.commitmetaPath(e.deployed), []byte("\x01garbage"), 0o644))
			_, err := updatecache.ListImages(e.repo)
			return err
		}},

		// ClearCachedUpdate
		{"ClearCachedUpdate: nothing deployed", updatecache.ErrNotDeployed, func(t *testing.T, e *contractEnv) error {
			return updatecache.ClearCachedUpdate(e.ctx, e.repo, e.reg.Ref("os/other", "stable"))
		}},
		{"ClearCachedUpdate: repository locked", updatecache.ErrLockTimeout, func(t *testing.T, e *contractEnv) error {
			e.holdLock(t)
			return updatecache.ClearCachedUpdate(e.ctx, e.repo, e.ref)
		}},

		// Pull
		{"Pull: a layer escaping the root", updatecache.ErrInvalidLayer, func(t *testing.T, e *contractEnv) error {
			e.push(image(t, "evil", func(s *updatecachetest.ImageSpec) {
				s.Layers = append(s.Layers, updatecachetest.Layer{Files: []updatecachetest.File{{Path: "usr/../../escape", Content: []byte("x")}}})
			}))
			_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			return err
		}},
		{"Pull: layer not matching its diff_id", updatecache.ErrDigestMismatch, func(t *testing.T, e *contractEnv) error {
			e.push(withConfig(t, image(t, "liar"), func(c map[string]any) {
				ids := c["rootfs"].(map[string]any)["diff_ids"].([]any)
				ids[0] = digest.FromString("another layer").String()
			}))
			_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			return err
		}},
		{"Pull: layer blob gone", updatecache.ErrManifestUnknown, func(t *testing.T, e *contractEnv) error {
			v := image(t, "2")
			e.push(v)
			e.reg.AddFault(updatecachetest.Fault{Method: "GET", Path: "/v2/os/base/blobs/" + v.Layers[1].Digest.String(), Status: 404})
			_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			return err
		}},
		{"Pull: commit verification by an OSTree remote", updatecache.ErrRemoteVerification, func(t *testing.T, e *contractEnv) error {
			e.push(image(t, "2"))
			e.reg.Reset()
			_, err := updatecache.Pull(e.ctx, e.repo, "ostree-remote-registry:fedora:"+strings.TrimPrefix(e.ref, "docker://"), e.pullOptions())
			assert.Zero(t, e.reg.Counts().Total, "nothing fetched")
			return err
		}},
		{"Pull: offline", updatecache.ErrOffline, func(t *testing.T, e *contractEnv) error {
			o := e.pullOptions()
			o.Offline = true
			_, err := updatecache.Pull(e.ctx, e.repo, e.ref, o)
			return err
		}},

		// PullPrepared
		{"PullPrepared: nothing cached", updatecache.ErrNoCachedUpdate, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
			return err
		}},
		{"PullPrepared: nothing deployed", updatecache.ErrNotDeployed, func(t *testing.T, e *contractEnv) error {
			_, err := updatecache.PullPrepared(e.ctx, e.repo, e.reg.Ref("os/other", "stable"), e.pullOptions())
			return err
		}},
		{"PullPrepared: update deleted from the registry", updatecache.ErrPreparedUpdateGone, func(t *testing.T, e *contractEnv) error {
			v2 := image(t, "2")
			e.push(v2)
			require.Equal(t, updatecache.UpdateCached, e.mustPrepare().Outcome)
			require.NoError(t, e.reg.DeleteManifest(e.ctx, "os/base", v2.ManifestDigest))
			_, err := updatecache.PullPrepared(e.ctx, e.repo, e.ref, e.pullOptions())
			return err
		}},

		// Prune
		{"Prune: repository locked", updatecache.ErrLockTimeout, func(t *testing.T, e *contractEnv) error {
			e.holdLock(t)
			_, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{})
			return err
		}},
		{"Prune: corrupt root commit", updatecache.ErrCorruptRepo, func(t *testing.T, e *contractEnv) error {
			p := filepath.Join(e.repoPath, "objects", e.deployed[:2], e.deployed[2:]+".commit")
			require.NoError(t, os.WriteFile(p, []byte("garbage"), 0o644))
			_, err := updatecache.Prune(e.ctx, e.repo, updatecache.PruneOptions{})
			return err
		}},

		// BootedImage
		{"BootedImage: not an OSTree system", updatecache.ErrNotBooted, func(t *testing.T, e *contractEnv) error {
			root := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(root, "proc"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(root, "proc", "cmdline"), []byte("root=/dev/sda1\n"), 0o644))
			_, err := updatecache.BootedImage(root)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newContractEnv(t)
			err := tt.run(t, e)
			require.Error(t, err)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
			}
			assert.NotEmpty(t, matchedSentinels(err), "%v wraps no root sentinel", err)
			msg := err.Error()
			for _, pkg := range []string{"updatecache", "ostree", "importer", "registry", "gvariant"} {
				prefix := regexp.MustCompile(`(^|: )` + pkg + `: `)
				assert.LessOrEqual(t, len(prefix.FindAllString(msg, -1)), 1, "%q repeats %q", err, pkg+": ")
			}
			// What failed and its cause, once: the image and every digest
			// are named at most once, and the line stays readable.
			assert.LessOrEqual(t, strings.Count(msg, "os/base"), 1, "%q names the image more than once", msg)
			for _, d := range digestPattern.FindAllString(msg, -1) {
				assert.Equal(t, 1, strings.Count(msg, d), "%q names %s more than once", msg, d)
			}
			prose := hexRun.ReplaceAllString(tempPath.ReplaceAllString(msg, "/tmp/x/"), "…")
			assert.LessOrEqual(t, len(prose), 250, "%q", prose)
		})
	}
}

// contractEnv is an env with v1 deployed (as a merge commit over an empty
// tree) and pushed, and a short lock timeout.
type contractEnv struct {
	*env
	deployed string
}

func newContractEnv(t *testing.T) *contractEnv {
	e := newEnv(t)
	v1 := image(t, "1")
	e.push(v1)
	commit := e.deploy(v1, "")
	cfg := filepath.Join(e.repoPath, "config")
	data, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), "[core]\n", "[core]\nlock-timeout-secs=1\n", 1)), 0o644))
	e.repo, err = updatecache.OpenRepo(e.repoPath)
	require.NoError(t, err)
	return &contractEnv{env: e, deployed: commit}
}

// openWithConfig opens a copy of the repository with another config.
func openWithConfig(t *testing.T, config string) error {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "objects"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644))
	_, err := updatecache.OpenRepo(dir)
	return err
}

func writeFile(t *testing.T, name, content string) string {
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// holdLock holds the repository lock exclusively, as libostree's prune
// does, until the test ends.
func (e *contractEnv) holdLock(t *testing.T) {
	r, err := ostree.Open(e.repoPath)
	require.NoError(t, err)
	unlock, err := r.Lock(context.Background(), ostree.LockExclusive)
	require.NoError(t, err)
	t.Cleanup(func() { unlock() })
}

// plainCommit writes a commit without image metadata.
func plainCommit(t *testing.T, e *contractEnv) string {
	r, err := ostree.Open(e.repoPath)
	require.NoError(t, err)
	c, err := r.ReadCommit(e.deployed)
	require.NoError(t, err)
	c.Metadata = nil
	sum, err := r.WriteCommit(e.ctx, c)
	require.NoError(t, err)
	return sum
}

// setRef points the image's ref at commit.
func (e *contractEnv) setRef(t *testing.T, commit string) {
	r, err := ostree.Open(e.repoPath)
	require.NoError(t, err)
	ref, err := ostree.ImageRefName(e.ref)
	require.NoError(t, err)
	require.NoError(t, r.SetRef(e.ctx, ref, commit))
}

// withFileSizeLimit runs fn with RLIMIT_FSIZE at limit bytes: writes past it
// fail with EFBIG (the Go runtime ignores SIGXFSZ), as on a full disk.
func withFileSizeLimit(t *testing.T, limit uint64, fn func()) {
	var old unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_FSIZE, &old))
	require.NoError(t, unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: old.Max}))
	defer func() { require.NoError(t, unix.Setrlimit(unix.RLIMIT_FSIZE, &old)) }()
	fn()
}

// withConfig returns img with its config JSON changed by edit (and the
// manifest pointing at the new config).
func withConfig(t *testing.T, img *updatecachetest.Image, edit func(map[string]any)) *updatecachetest.Image {
	var c map[string]any
	require.NoError(t, json.Unmarshal(img.Config.Data, &c))
	edit(c)
	data, err := json.Marshal(c)
	require.NoError(t, err)
	out := *img
	out.Config = updatecachetest.Blob{MediaType: img.Config.MediaType, Digest: digest.FromBytes(data), Size: int64(len(data)), Data: data}
	var m map[string]any
	require.NoError(t, json.Unmarshal(img.Manifest, &m))
	m["config"] = map[string]any{"mediaType": out.Config.MediaType, "digest": out.Config.Digest, "size": out.Config.Size}
	if out.Manifest, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	out.ManifestDigest = digest.FromBytes(out.Manifest)
	return &out
}
