package updatecache_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/internal/testtool"
	"github.com/osimage/updatecache/updatecachetest"
)

// hostileOp is what a hostile-registry case runs: the update check, the
// fetch of the prepared update, or both.
type hostileOp int

const (
	opPrepare hostileOp = 1 << iota
	opPull
	opBoth = opPrepare | opPull
)

func (op hostileOp) String() string {
	if op == opPull {
		return "PullPrepared"
	}
	return "Prepare"
}

// front is how the client reaches the registry.
type front int

const (
	plainHTTP front = iota // as every other test: plain HTTP, TLS verification off
	// The rest turn TLS verification on for the operation under test.
	plainVerified // plain HTTP still: the client wants TLS
	tlsUntrusted  // TLS with httptest's self-signed certificate
	tlsWrongName  // that certificate trusted, but the registry named "localhost", which it does not cover
	tlsTrusted    // that certificate trusted, for the name used
)

// scene is what one case works on: a repository in which v1 is pulled and
// deployed and v2 prepared (cached on v1's merge commit), and a registry
// whose tag has moved on to v3 since.
type scene struct {
	*env
	v1, v2, v3 *updatecachetest.Image
	deployed   string // v1's merge commit
}

// ownLayer is the layer v2 has and v1 lacks: the one PullPrepared fetches.
func (s *scene) ownLayer() updatecachetest.Blob { return s.v2.Layers[1] }

type hostileCase struct {
	name  string
	ops   hostileOp
	front front
	// faults returns the faults to add; it may also change the registry.
	faults func(s *scene) []updatecachetest.Fault
	opts   func(*updatecache.RegistryOptions)
	// timeout is the operation's deadline; default 20 s.
	timeout time.Duration
	// want is the sentinel the error must match, nil for success; also is a
	// second error it must match, and msg a text it must contain.
	want, also error
	msg        string
}

// Fault helpers: on restricts a fault to a method and kind of request.
func on(method string, kind updatecachetest.Kind) func(updatecachetest.Fault) updatecachetest.Fault {
	return func(f updatecachetest.Fault) updatecachetest.Fault {
		f.Method, f.Kind = method, kind
		return f
	}
}

var (
	manifestHEAD = on(http.MethodHead, updatecachetest.KindManifest)
	manifestGET  = on(http.MethodGet, updatecachetest.KindManifest)
	blobGET      = on(http.MethodGet, updatecachetest.KindBlob)
)

// always is a case's faults when they do not depend on the scene.
func always(fs ...updatecachetest.Fault) func(*scene) []updatecachetest.Fault {
	return func(*scene) []updatecachetest.Fault { return fs }
}

// onLayer applies f to GETs of the layer PullPrepared fetches.
func onLayer(f updatecachetest.Fault) func(*scene) []updatecachetest.Fault {
	return func(s *scene) []updatecachetest.Fault {
		f = blobGET(f)
		f.Path = s.ownLayer().Digest.Encoded()
		return []updatecachetest.Fault{f}
	}
}

// toItself makes faults redirect requests to the registry they were sent to.
func toItself(faults func(*scene) []updatecachetest.Fault) func(*scene) []updatecachetest.Fault {
	return func(s *scene) []updatecachetest.Fault {
		fs := faults(s)
		for i := range fs {
			fs[i].Redirect = s.reg.URL()
		}
		return fs
	}
}

// serve makes the registry answer for the tag with a manifest of this media
// type and body, as a registry holding it would: the HEAD names its digest
// and a GET by that digest returns it. (The real registry refuses to store
// most of these documents.)
func serve(mediaType string, body []byte) func(*scene) []updatecachetest.Fault {
	return func(*scene) []updatecachetest.Fault {
		h := http.Header{"Content-Type": {mediaType}}
		d := digest.FromBytes(body).String()
		return []updatecachetest.Fault{
			manifestHEAD(updatecachetest.Fault{Path: "/manifests/stable", Digest: d, Header: h}),
			manifestGET(updatecachetest.Fault{Path: "/manifests/" + d, Status: http.StatusOK, Header: h, Body: body}),
		}
	}
}

// indexOf is an OCI index with one amd64 entry: desc, a manifest or an index.
func indexOf(t *testing.T, desc imgspecv1.Descriptor) []byte {
	desc.Platform = &imgspecv1.Platform{OS: "linux", Architecture: "amd64"}
	data, err := json.Marshal(imgspecv1.Index{
		Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: []imgspecv1.Descriptor{desc},
	})
	require.NoError(t, err)
	return data
}

// lie is a digest no registry here has.
var lie = digest.FromString("no such manifest").String()

// hostileCases are the ways a registry can fail or lie, for the update check
// and for the fetch of the prepared update. The ones with want == nil are
// hostile-looking answers a client must tolerate: they succeed.
var hostileCases = []hostileCase{
	// Server errors.
	{name: "HEAD 500", ops: opPrepare, faults: always(manifestHEAD(updatecachetest.Fault{Status: 500})), want: updatecache.ErrUnavailable},
	{name: "manifest GET 503", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Status: 503})), want: updatecache.ErrUnavailable},
	{name: "config 502", ops: opBoth, faults: always(blobGET(updatecachetest.Fault{Status: 502})), want: updatecache.ErrUnavailable},
	{name: "layer 500", ops: opPull, faults: onLayer(updatecachetest.Fault{Status: 500}), want: updatecache.ErrUnavailable},
	{name: "registry gone", ops: opBoth, faults: func(s *scene) []updatecachetest.Fault {
		s.reg.Stop()
		s.t.Cleanup(func() { require.NoError(s.t, s.reg.Restart(), "the next cases need the registry back") })
		return nil
	}, want: updatecache.ErrUnavailable},

	// Rate limiting. containers/image retries a 429 four times, waiting
	// Retry-After or else 2 s doubling; a deadline that expires while it
	// waits reads as a timeout (ErrUnavailable and DeadlineExceeded).
	{name: "429 persistent", ops: opPrepare, faults: always(manifestHEAD(updatecachetest.Fault{Status: 429, Header: http.Header{"Retry-After": {"1"}}})),
		want: updatecache.ErrRateLimited},
	{name: "429 with Retry-After 0", ops: opPrepare, faults: always(blobGET(updatecachetest.Fault{Status: 429, Header: http.Header{"Retry-After": {"0"}},
		Body: updatecachetest.ErrorBody("TOOMANYREQUESTS", "slow down")})), want: updatecache.ErrRateLimited},
	{name: "layer 429 with Retry-After 0", ops: opPull, faults: onLayer(updatecachetest.Fault{Status: 429, Header: http.Header{"Retry-After": {"0"}}}),
		want: updatecache.ErrRateLimited},
	// The check's own client fails at once when the back-off would outlast
	// the deadline; containers/image (the pull) waits it out.
	{name: "429 without Retry-After", ops: opPrepare, faults: always(manifestGET(updatecachetest.Fault{Status: 429})), timeout: time.Second,
		want: updatecache.ErrRateLimited, msg: "beyond the deadline"},
	{name: "layer 429 without Retry-After", ops: opPull, faults: onLayer(updatecachetest.Fault{Status: 429}), timeout: time.Second,
		want: updatecache.ErrUnavailable, also: context.DeadlineExceeded},
	{name: "429 once", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Status: 429, Header: http.Header{"Retry-After": {"0"}}, Times: 1}))},

	// Access.
	{name: "401 without a challenge", ops: opPrepare, faults: always(manifestHEAD(updatecachetest.Fault{Status: 401})), want: updatecache.ErrUnauthorized},
	{name: "layer 401 without a challenge", ops: opPull, faults: onLayer(updatecachetest.Fault{Status: 401}), want: updatecache.ErrUnauthorized},
	{name: "404", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Status: 404, Body: updatecachetest.ErrorBody("MANIFEST_UNKNOWN", "gone")})),
		want: updatecache.ErrManifestUnknown},

	// Redirects.
	{name: "redirect to another host without the image", ops: opBoth, faults: func(s *scene) []updatecachetest.Fault {
		other := updatecachetest.NewRegistry(s.t)
		return []updatecachetest.Fault{manifestGET(updatecachetest.Fault{Redirect: other.URL()})}
	}, want: updatecache.ErrManifestUnknown},
	{name: "blobs redirected to a mirror", ops: opBoth, faults: func(s *scene) []updatecachetest.Fault {
		mirror := updatecachetest.NewRegistry(s.t)
		for _, img := range []*updatecachetest.Image{s.v1, s.v2, s.v3} {
			_, err := mirror.Push(s.ctx, "os/base", "stable", img)
			require.NoError(s.t, err)
		}
		return []updatecachetest.Fault{blobGET(updatecachetest.Fault{Redirect: mirror.URL()})}
	}},
	{name: "redirect loop", ops: opBoth, faults: toItself(always(manifestGET(updatecachetest.Fault{}))), want: updatecache.ErrUnavailable, msg: "redirects"},
	{name: "HEAD redirect loop", ops: opPrepare, faults: toItself(always(manifestHEAD(updatecachetest.Fault{}))), want: updatecache.ErrUnavailable, msg: "redirects"},
	{name: "layer redirect loop", ops: opPull, faults: toItself(onLayer(updatecachetest.Fault{})), want: updatecache.ErrUnavailable, msg: "redirects"},

	// Slow answers.
	{name: "timeout", ops: opPrepare, faults: always(manifestGET(updatecachetest.Fault{Delay: time.Minute})), timeout: time.Second,
		want: updatecache.ErrUnavailable, also: context.DeadlineExceeded},
	{name: "layer headers never come", ops: opPull, faults: onLayer(updatecachetest.Fault{Delay: time.Minute}), timeout: time.Second,
		want: updatecache.ErrUnavailable, also: context.DeadlineExceeded},
	{name: "slow manifest body", ops: opPrepare, faults: always(manifestGET(updatecachetest.Fault{Throttle: 16})), timeout: time.Second,
		want: updatecache.ErrUnavailable, also: context.DeadlineExceeded},
	{name: "slow layer body", ops: opPull, faults: onLayer(updatecachetest.Fault{Throttle: 16}), timeout: time.Second,
		want: updatecache.ErrUnavailable, also: context.DeadlineExceeded},

	// Bodies of the wrong length.
	{name: "truncated body", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Truncate: true})), want: updatecache.ErrMalformed},
	{name: "truncated config", ops: opPrepare, faults: always(blobGET(updatecachetest.Fault{Truncate: true})), want: updatecache.ErrMalformed},
	{name: "truncated layer", ops: opPull, faults: onLayer(updatecachetest.Fault{Truncate: true}), want: updatecache.ErrMalformed},
	{name: "manifest longer than its Content-Length", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Understate: 10})),
		want: updatecache.ErrDigestMismatch},
	{name: "layer longer than its Content-Length", ops: opPull, faults: onLayer(updatecachetest.Fault{Understate: 10}), want: updatecache.ErrDigestMismatch},
	{name: "bytes past the Content-Length", ops: opBoth, faults: always(blobGET(updatecachetest.Fault{Pad: 10, Understate: 10}))},
	{name: "layer longer than its descriptor", ops: opPull, faults: onLayer(updatecachetest.Fault{Pad: 1 << 10}), want: updatecache.ErrDigestMismatch},
	{name: "oversized manifest", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Pad: 1 << 10})),
		opts: func(o *updatecache.RegistryOptions) { o.MaxManifestSize = 512 }, want: updatecache.ErrTooLarge},
	{name: "oversized config", ops: opBoth, opts: func(o *updatecache.RegistryOptions) { o.MaxConfigSize = 16 }, want: updatecache.ErrTooLarge},

	// Content that does not match its digest.
	{name: "manifest not matching its digest", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Corrupt: true})), want: updatecache.ErrDigestMismatch},
	{name: "config not matching its digest", ops: opBoth, faults: always(blobGET(updatecachetest.Fault{Corrupt: true})), want: updatecache.ErrDigestMismatch},
	{name: "layer not matching its digest", ops: opPull, faults: onLayer(updatecachetest.Fault{Corrupt: true}), want: updatecache.ErrDigestMismatch},
	{name: "lying Docker-Content-Digest", ops: opPrepare, faults: always(manifestHEAD(updatecachetest.Fault{Digest: lie})), want: updatecache.ErrManifestUnknown},
	{name: "lying Docker-Content-Digest on GETs", ops: opBoth,
		faults: always(manifestGET(updatecachetest.Fault{Digest: lie}), blobGET(updatecachetest.Fault{Digest: lie}))},

	// Content types.
	{name: "manifest with a wrong Content-Type", ops: opBoth, faults: always(manifestGET(updatecachetest.Fault{Header: http.Header{"Content-Type": {"text/html"}}}))},
	{name: "blobs with a wrong Content-Type", ops: opBoth, faults: always(blobGET(updatecachetest.Fault{Header: http.Header{"Content-Type": {"text/html"}}}))},
	{name: "malformed JSON", ops: opPrepare, faults: serve(imgspecv1.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"config":`)), want: updatecache.ErrMalformed},
	{name: "schema 1", ops: opPrepare, faults: serve("application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion":1,"fsLayers":[]}`)),
		want: updatecache.ErrUnsupportedManifest},
	{name: "unknown media type", ops: opPrepare, faults: serve("application/vnd.example+json", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.example+json"}`)),
		want: updatecache.ErrUnsupportedManifest},

	// Index loops: an index entry naming an index. Content addressing makes
	// a true cycle impossible, so "itself" is a registry answering the
	// entry's digest with the index's own bytes.
	{name: "index entry is an index", ops: opPrepare, faults: func(s *scene) []updatecachetest.Fault {
		inner, err := updatecachetest.NewIndex(s.v3)
		require.NoError(s.t, err)
		_, err = s.reg.Push(s.ctx, "os/base", "inner", inner)
		require.NoError(s.t, err)
		return serve(imgspecv1.MediaTypeImageIndex, indexOf(s.t, imgspecv1.Descriptor{
			MediaType: imgspecv1.MediaTypeImageIndex, Digest: inner.ManifestDigest, Size: int64(len(inner.Manifest)),
		}))(s)
	}, want: updatecache.ErrUnsupportedManifest},
	{name: "index entry answered with the index", ops: opPrepare, faults: func(s *scene) []updatecachetest.Fault {
		outer := indexOf(s.t, imgspecv1.Descriptor{MediaType: s.v3.MediaType, Digest: s.v3.ManifestDigest, Size: int64(len(s.v3.Manifest))})
		return append(serve(imgspecv1.MediaTypeImageIndex, outer)(s), manifestGET(updatecachetest.Fault{
			Path: "/manifests/" + s.v3.ManifestDigest.String(), ReplaceBody: outer, Header: http.Header{"Content-Type": {imgspecv1.MediaTypeImageIndex}},
		}))
	}, want: updatecache.ErrDigestMismatch},

	// TLS, verified: a failed handshake is ErrUnavailable, and the message
	// says what was wrong with the certificate.
	{name: "TLS: self-signed certificate", ops: opBoth, front: tlsUntrusted, want: updatecache.ErrConfig, msg: "certificate signed by unknown authority"},
	{name: "TLS: certificate for other names", ops: opBoth, front: tlsWrongName, want: updatecache.ErrConfig, msg: "not localhost"},
	{name: "TLS: plain HTTP answers", ops: opBoth, front: plainVerified, want: updatecache.ErrConfig, msg: "HTTP response to HTTPS client"},
	{name: "TLS: trusted certificate", ops: opBoth, front: tlsTrusted},
}

// TestHostileRegistries runs every case against the in-process registry and
// against the real docker-registry behind the fault proxy, for Prepare and
// for PullPrepared. A failure must match its sentinel within the deadline
// and leave the repository byte for byte as it was: fsck clean, v1 deployed,
// v2 still the cached update.
func TestHostileRegistries(t *testing.T) {
	testtool.Ostree(t)
	for _, real := range []bool{false, true} {
		name := map[bool]string{false: "in-process registry", true: "real registry"}[real]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			w := newWorld(t, real)
			failures := map[hostileOp]int{}
			for _, op := range []hostileOp{opPrepare, opPull} {
				for _, tc := range hostileCases {
					if tc.ops&op == 0 {
						continue
					}
					if tc.want != nil {
						failures[op]++
					}
					t.Run(op.String()+"/"+tc.name, func(t *testing.T) { w.run(t, op, tc) })
				}
			}
			t.Logf("%d failure cases for Prepare, %d for PullPrepared, in %v", failures[opPrepare], failures[opPull], time.Since(start).Round(time.Millisecond))
		})
	}
}

// world is what the cases against one registry share: the registry (faults
// go to reg: the in-process registry, or the proxy in front of the real
// one), the images, and per front a template repository in which v1 is
// deployed and v2 prepared, copied for each case.
type world struct {
	reg        *updatecachetest.Registry
	sys        *types.SystemContext
	v1, v2, v3 *updatecachetest.Image
	templates  map[front]template
}

type template struct {
	ref, repoPath, deployed string
}

// newWorld starts the registry and its TLS fronts and builds the templates:
// each pulls v1 and prepares v2 while the tag names them.
func newWorld(t *testing.T, real bool) *world {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := &world{v1: image(t, "1"), v2: image(t, "2"), v3: image(t, "3"), templates: map[front]template{}}
	var err error
	w.sys, err = updatecachetest.SystemContext(t.TempDir())
	require.NoError(t, err)
	if real {
		host, _ := testtool.StartRegistry(t)
		w.reg = updatecachetest.NewProxy(t, &url.URL{Scheme: "http", Host: host})
	} else {
		w.reg = updatecachetest.NewRegistry(t)
	}
	envs := map[front]*env{}
	for _, f := range []front{plainHTTP, tlsUntrusted, tlsWrongName, tlsTrusted} {
		e := &env{t: t, ctx: ctx, reg: w.reg, repoPath: updatecachetest.NewRepo(t), sys: w.sys, ref: w.reg.Ref("os/base", "stable")}
		if f != plainHTTP {
			e.ref = "docker://" + w.serveTLS(t, f) + "/os/base:stable"
		}
		e.repo, err = updatecache.OpenRepo(e.repoPath)
		require.NoError(t, err)
		envs[f] = e
	}
	envs[plainHTTP].push(w.v1)
	for f, e := range envs {
		res, err := updatecache.Pull(ctx, e.repo, e.ref, e.pullOptions())
		require.NoError(t, err)
		w.templates[f] = template{ref: e.ref, repoPath: e.repoPath, deployed: res.MergeCommit}
	}
	envs[plainHTTP].push(w.v2)
	for _, e := range envs {
		require.True(t, e.mustPrepare().Persisted())
	}
	envs[plainHTTP].push(w.v3)
	w.templates[plainVerified] = w.templates[plainHTTP]
	return w
}

// serveTLS starts a TLS server with httptest's self-signed certificate in
// front of the registry and returns the host:port to name it by; the
// certificate is trusted for that name unless f is tlsUntrusted.
func (w *world) serveTLS(t *testing.T, f front) string {
	srv := httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(w.reg.URL()))
	// Failed handshakes are the point here, not news.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()
	if f == tlsWrongName {
		_, port, err := net.SplitHostPort(host)
		require.NoError(t, err)
		host = net.JoinHostPort("localhost", port)
	}
	if f != tlsUntrusted {
		dir := filepath.Join(w.sys.DockerPerHostCertDirPath, host)
		require.NoError(t, os.MkdirAll(dir, 0o700))
		ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		require.NoError(t, os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o600))
	}
	return host
}

// scene copies the front's template repository for one case.
func (w *world) scene(t *testing.T, f front) *scene {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	tmpl := w.templates[f]
	repoPath := filepath.Join(t.TempDir(), "repo")
	out, err := exec.Command("cp", "-a", tmpl.repoPath, repoPath).CombinedOutput()
	require.NoError(t, err, "%s", out)
	repo, err := updatecache.OpenRepo(repoPath)
	require.NoError(t, err)
	return &scene{
		env: &env{t: t, ctx: ctx, reg: w.reg, repoPath: repoPath, repo: repo, sys: w.sys, ref: tmpl.ref},
		v1:  w.v1, v2: w.v2, v3: w.v3, deployed: tmpl.deployed,
	}
}

func (w *world) run(t *testing.T, op hostileOp, tc hostileCase) {
	s := w.scene(t, tc.front)
	defer w.reg.ClearFaults()
	if tc.faults != nil {
		for _, f := range tc.faults(s) {
			w.reg.AddFault(f)
		}
	}
	opts := s.options().RegistryOptions
	if tc.front != plainHTTP {
		sys := *opts.SystemContext
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolFalse
		opts.SystemContext = &sys
	}
	if tc.opts != nil {
		tc.opts(&opts)
	}
	timeout := tc.timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	before := snapshotTree(t, s.repoPath)

	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	start := time.Now()
	var err error
	var pulled *updatecache.PullResult
	if op == opPrepare {
		_, err = updatecache.Prepare(ctx, s.repo, s.ref, updatecache.PrepareOptions{RegistryOptions: opts})
	} else {
		pulled, err = updatecache.PullPrepared(ctx, s.repo, s.ref, updatecache.PullOptions{RegistryOptions: opts})
	}
	elapsed := time.Since(start)
	t.Logf("%v in %v", err, elapsed.Round(time.Millisecond))
	assert.Less(t, elapsed, timeout+time.Second, "within the deadline")
	testtool.RunOstree(t, "fsck", "--repo="+s.repoPath)
	st, qerr := updatecache.QueryImage(s.repo, s.ref)
	require.NoError(t, qerr)

	if tc.want == nil {
		require.NoError(t, err)
		if op == opPrepare {
			require.NotNil(t, st.CachedUpdate)
			assert.Equal(t, s.v3.ManifestDigest, st.CachedUpdate.ManifestDigest, "v3 cached")
			return
		}
		assert.Equal(t, s.v2.ManifestDigest, pulled.Pulled.ManifestDigest)
		assert.Equal(t, pulled.MergeCommit, st.Deployed.MergeCommit, "v2 deployed")
		assert.Equal(t, filesOf(versionSpec("2")), checkout(t, s.repoPath, pulled.MergeCommit))
		return
	}
	require.ErrorIs(t, err, tc.want)
	if tc.also != nil {
		assert.ErrorIs(t, err, tc.also)
	}
	if tc.msg != "" {
		assert.Contains(t, err.Error(), tc.msg)
	}
	assert.Equal(t, before, snapshotTree(t, s.repoPath), "repository unchanged")
	assert.Equal(t, s.deployed, st.Deployed.MergeCommit, "v1 still deployed")
	require.NotNil(t, st.CachedUpdate, "v2 still cached")
	assert.Equal(t, s.v2.ManifestDigest, st.CachedUpdate.ManifestDigest, "v2 still cached")
}

// TestHostileRefDirectories: a repository whose ref directories
// (refs/heads/ostree, …/container/blob) are symbolic links to a directory
// outside it: a pull writes no ref there and the queries read nothing
// through the link; each fails with ErrCorruptRepo.
func TestHostileRefDirectories(t *testing.T) {
	for _, dir := range []string{"ostree", "ostree/container/blob"} {
		t.Run(dir, func(t *testing.T) {
			e := newEnv(t)
			v1 := image(t, "1")
			e.push(v1)
			if dir != "ostree" {
				e.deploy(v1, "") // the image ref itself is readable
				e.push(image(t, "2"))
			}
			outside := t.TempDir()
			link := filepath.Join(e.repoPath, "refs/heads", dir)
			require.NoError(t, os.MkdirAll(filepath.Dir(link), 0o755))
			require.NoError(t, os.RemoveAll(link))
			require.NoError(t, os.Symlink(outside, link))
			e.reg.Reset()

			_, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
			assert.ErrorIs(t, err, updatecache.ErrCorruptRepo, "pull")
			entries, rerr := os.ReadDir(outside)
			require.NoError(t, rerr)
			assert.Empty(t, entries, "nothing written through the link")
			if dir == "ostree" {
				_, err = updatecache.ListImages(e.repo)
				assert.ErrorIs(t, err, updatecache.ErrCorruptRepo, "list")
				_, err = updatecache.QueryImage(e.repo, e.ref)
				assert.ErrorIs(t, err, updatecache.ErrCorruptRepo, "query")
			}
		})
	}
}

// TestHostileLongImageName: an image whose ref would have a component
// longer than a file name is refused before any request, not after every
// layer was downloaded.
func TestHostileLongImageName(t *testing.T) {
	e := newEnv(t)
	// "." escapes to "_2E_": a legal 127-byte tag becomes a 300-byte ref component.
	tag := "v" + strings.Repeat(".1", 63)
	long := e.reg.Ref("os/base", tag)
	_, err := e.reg.Push(e.ctx, "os/base", tag, image(t, "1"))
	require.NoError(t, err)
	e.reg.Reset()
	_, err = updatecache.Pull(e.ctx, e.repo, long, e.pullOptions())
	assert.ErrorIs(t, err, updatecache.ErrInvalidReference)
	_, err = updatecache.Prepare(e.ctx, e.repo, long, e.options())
	assert.ErrorIs(t, err, updatecache.ErrInvalidReference)
	assert.Zero(t, e.reg.Counts().Total, "requests: %s", e.reg.Counts())
}

// TestHostileCacheOverTheReadCap: an update whose manifest and config would
// make the deployed commit's detached metadata larger than readers accept
// is not cached (ErrTooLarge, the file unchanged), and status, clear and
// later checks keep working.
func TestHostileCacheOverTheReadCap(t *testing.T) {
	e := newEnv(t)
	v1 := image(t, "1")
	e.push(v1)
	commit := e.deploy(v1, "")
	require.NoError(t, updatecache.ClearCachedUpdate(e.ctx, e.repo, e.ref))
	before := e.stat(e.commitmetaPath(commit))
	huge := image(t, "2", func(s *updatecachetest.ImageSpec) {
		s.Labels = map[string]string{"padding": strings.Repeat("x", 65<<20)}
	})
	e.push(huge)
	opts := e.options()
	opts.MaxConfigSize = 80 << 20
	_, err := updatecache.Prepare(e.ctx, e.repo, e.ref, opts)
	require.ErrorIs(t, err, updatecache.ErrTooLarge)
	assert.Equal(t, before, e.stat(e.commitmetaPath(commit)), "detached metadata unchanged")

	_, err = updatecache.QueryImage(e.repo, e.ref)
	assert.NoError(t, err, "status")
	assert.NoError(t, updatecache.ClearCachedUpdate(e.ctx, e.repo, e.ref), "clear")
	e.push(image(t, "3"))
	assert.Equal(t, updatecache.UpdateCached, e.mustPrepare().Outcome, "a later check")
}

// TestHostileRepeatedLayer: a manifest listing the same layer a thousand
// times costs one download and one import of it.
func TestHostileRepeatedLayer(t *testing.T) {
	forEachRegistry(t, func(t *testing.T, e *env) {
		layers := []updatecachetest.Layer{baseLayer}
		for range 1000 {
			layers = append(layers, updatecachetest.Layer{Files: []updatecachetest.File{{Path: "usr/share/same", Content: []byte("same\n")}}})
		}
		img := image(t, "1", func(s *updatecachetest.ImageSpec) { s.Layers = layers })
		e.push(img)
		e.reg.Reset()
		res, err := updatecache.Pull(e.ctx, e.repo, e.ref, e.pullOptions())
		require.NoError(t, err)
		assert.Equal(t, 2, res.LayersFetched, "distinct layers fetched")
		c := e.reg.Counts()
		assert.Equal(t, 1, c.BlobGETs(img.Layers[1].Digest), "GETs of the repeated layer")
		assert.Equal(t, 3, c.BlobGET, "blob GETs: config and two distinct layers")
		st, err := updatecache.QueryImage(e.repo, e.ref)
		require.NoError(t, err)
		assert.Len(t, st.Deployed.Layers, 1001, "the manifest as listed")
		assert.Equal(t, map[string]string{"usr/bin/sh": "#!shell\n", "usr/lib/os-release": "ID=test\n", "usr/share/same": "same\n"},
			checkout(t, e.repoPath, res.MergeCommit))
	})
}
