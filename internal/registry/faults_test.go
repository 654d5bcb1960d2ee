package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache/internal/registry"
	"github.com/osimage/updatecache/updatecachetest"
)

// fixture is what one fault case works on: a single-platform image and a
// multi-platform index, each tagged "stable" in its own repository.
type fixture struct {
	reg      *updatecachetest.Registry
	img      *updatecachetest.Image
	idx      *updatecachetest.Index
	ref      types.ImageReference // the image's tag
	multiRef types.ImageReference // the index's tag, for cases that are multi
}

// path is how an image is read: the check's session (Client.Check, then
// Check.Image) or the pull's containers/image source (Client.Open, then
// Source.Image).
type path string

const (
	checkPath path = "check"
	pullPath  path = "pull"
)

// op is what a fault case does, along path.
type op func(ctx context.Context, p path, c *registry.Client, f *fixture) error

// readImage reads the image ref names: by tag along the check path is a
// HEAD and then GETs by its digest; along the pull path GETs by tag (top
// == "") or by top.
func readImage(ctx context.Context, p path, c *registry.Client, ref types.ImageReference, top digest.Digest) (*registry.Image, error) {
	if p == checkPath {
		if top != "" {
			var err error
			if ref, err = registry.Pin(ref, top); err != nil {
				return nil, err
			}
		}
		ch, err := c.Check(ctx, ref)
		if err != nil {
			return nil, err
		}
		defer ch.Close()
		return ch.Image(ctx)
	}
	src, err := c.Open(ctx, ref, top)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return src.Image(ctx)
}

// opHead is the check's HEAD alone (check path only).
func opHead(ctx context.Context, _ path, c *registry.Client, f *fixture) error {
	ch, err := c.Check(ctx, f.ref)
	if err == nil {
		ch.Close()
	}
	return err
}

func opImageTag(ctx context.Context, p path, c *registry.Client, f *fixture) error {
	_, err := readImage(ctx, p, c, f.ref, "")
	return err
}

func opImageDigest(ctx context.Context, p path, c *registry.Client, f *fixture) error {
	_, err := readImage(ctx, p, c, f.ref, f.img.ManifestDigest)
	return err
}

func opImageMulti(ctx context.Context, p path, c *registry.Client, f *fixture) error {
	_, err := readImage(ctx, p, c, f.multiRef, f.idx.ManifestDigest)
	return err
}

// opCheck is the whole update check: along the check path one session;
// along the pull path Digest and then Open by that digest, as Prepare did
// before Check.
func opCheck(ctx context.Context, p path, c *registry.Client, f *fixture) error {
	if p == checkPath {
		_, err := readImage(ctx, p, c, f.ref, "")
		return err
	}
	d, err := digestOf(ctx, c, f.ref)
	if err != nil {
		return err
	}
	_, err = readImage(ctx, p, c, f.ref, d)
	return err
}

// lie is a digest the registry does not have.
var lie = digest.FromString("not the image")

func status(code int, body []byte, kv ...string) updatecachetest.Fault {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return updatecachetest.Fault{Status: code, Header: h, Body: body}
}

// on restricts a fault to a method and kind of request.
func on(method string, kind updatecachetest.Kind, f updatecachetest.Fault) updatecachetest.Fault {
	f.Method, f.Kind = method, kind
	return f
}

var (
	head = func(f updatecachetest.Fault) updatecachetest.Fault {
		return on(http.MethodHead, updatecachetest.KindManifest, f)
	}
	getManifest = func(f updatecachetest.Fault) updatecachetest.Fault {
		return on(http.MethodGet, updatecachetest.KindManifest, f)
	}
	getBlob = func(f updatecachetest.Fault) updatecachetest.Fault {
		return on(http.MethodGet, updatecachetest.KindBlob, f)
	}
)

// manifestBody serves body as the manifest with a Content-Type.
func manifestBody(mediaType, body string) updatecachetest.Fault {
	return getManifest(updatecachetest.Fault{ReplaceBody: []byte(body), Header: http.Header{"Content-Type": {mediaType}}})
}

type faultCase struct {
	name    string
	faults  func(t *testing.T, f *fixture) []updatecachetest.Fault
	opts    registry.Options
	timeout time.Duration // default 20s
	op      op
	only    path  // run along this path only; "" means both
	multi   bool  // the case reads the index (multiRef)
	want    error // nil: success
	also    error // a second error the result must match
	check   func(t *testing.T, f *fixture, n updatecachetest.Counts)
}

func faults(fs ...updatecachetest.Fault) func(*testing.T, *fixture) []updatecachetest.Fault {
	return func(*testing.T, *fixture) []updatecachetest.Fault { return fs }
}

var faultCases = []faultCase{
	{name: "HEAD 500", faults: faults(head(status(500, nil))), op: opHead, only: checkPath, want: registry.ErrUnavailable},
	{name: "HEAD 502", faults: faults(head(status(502, nil))), op: opHead, only: checkPath, want: registry.ErrUnavailable},
	{name: "GET 503", faults: faults(getManifest(status(503, nil))), op: opImageDigest, want: registry.ErrUnavailable},
	{name: "ping 503", faults: faults(on(http.MethodGet, updatecachetest.KindPing, status(503, nil))), op: opImageTag, want: registry.ErrUnavailable},
	{name: "config GET 500", faults: faults(getBlob(status(500, nil))), op: opImageDigest, want: registry.ErrUnavailable},
	{name: "HEAD 401", faults: faults(head(status(401, nil))), op: opHead, only: checkPath, want: registry.ErrUnauthorized},
	{name: "GET 401 UNAUTHORIZED", faults: faults(getManifest(status(401, updatecachetest.ErrorBody("UNAUTHORIZED", "authentication required")))),
		op: opImageDigest, want: registry.ErrUnauthorized},
	{name: "HEAD 403", faults: faults(head(status(403, nil))), op: opHead, only: checkPath, want: registry.ErrUnauthorized},
	{name: "GET 403 DENIED", faults: faults(getManifest(status(403, updatecachetest.ErrorBody("DENIED", "requested access to the resource is denied")))),
		op: opImageDigest, want: registry.ErrUnauthorized},
	{name: "HEAD 404", faults: faults(head(status(404, nil))), op: opHead, only: checkPath, want: registry.ErrManifestUnknown},
	{name: "GET 404 MANIFEST_UNKNOWN", faults: faults(getManifest(status(404, updatecachetest.ErrorBody("MANIFEST_UNKNOWN", "manifest unknown")))),
		op: opImageDigest, want: registry.ErrManifestUnknown},
	{name: "GET 404 plain text", faults: faults(getManifest(status(404, []byte("404 page not found"), "Content-Type", "text/plain"))),
		op: opImageDigest, want: registry.ErrManifestUnknown},
	{name: "config GET 404 BLOB_UNKNOWN", faults: faults(getBlob(status(404, updatecachetest.ErrorBody("BLOB_UNKNOWN", "blob unknown")))),
		op: opImageDigest, want: registry.ErrManifestUnknown},
	{
		name:   "429 Retry-After 1 then success",
		faults: faults(head(updatecachetest.Fault{Status: 429, Header: http.Header{"Retry-After": {"1"}}, Times: 1})),
		op:     opHead, only: checkPath,
		check: func(t *testing.T, _ *fixture, n updatecachetest.Counts) {
			if n.ManifestHEAD != 2 {
				t.Errorf("want the HEAD retried once after the 429; %v", n)
			}
		},
	},
	{
		name:   "429 persistent",
		faults: faults(head(status(429, nil, "Retry-After", "1"))),
		op:     opHead, only: checkPath, want: registry.ErrRateLimited,
		check: func(t *testing.T, _ *fixture, n updatecachetest.Counts) {
			if n.ManifestHEAD != 5 {
				t.Errorf("want 5 attempts, as containers/image makes, before giving up; %v", n)
			}
		},
	},
	{
		name:   "429 TOOMANYREQUESTS on config",
		faults: faults(getBlob(status(429, updatecachetest.ErrorBody("TOOMANYREQUESTS", "slow down"), "Retry-After", "0"))),
		op:     opImageDigest, want: registry.ErrRateLimited,
	},
	{
		// The check's session does not start a wait the deadline cannot
		// cover: the registry's answer, rate limiting, is the error.
		name:    "429 Retry-After beyond the deadline",
		faults:  faults(getBlob(status(429, nil, "Retry-After", "30"))),
		timeout: 3 * time.Second,
		op:      opImageDigest, only: checkPath, want: registry.ErrRateLimited,
		check: func(t *testing.T, _ *fixture, n updatecachetest.Counts) {
			if n.BlobGET != 1 {
				t.Errorf("want no retry that cannot finish in time; %v", n)
			}
		},
	},
	{
		// containers/image waits out Retry-After inside one call and then
		// returns the bare context error, so a deadline that expires first
		// reads as a timeout, not as rate limiting.
		name:    "429 Retry-After beyond the deadline (containers/image)",
		faults:  faults(getBlob(status(429, nil, "Retry-After", "30"))),
		timeout: time.Second,
		op:      opImageDigest, only: pullPath, want: registry.ErrUnavailable, also: context.DeadlineExceeded,
	},
	{
		name:    "HEAD slower than the deadline",
		faults:  faults(head(updatecachetest.Fault{Delay: time.Minute})),
		timeout: 500 * time.Millisecond,
		op:      opHead, only: checkPath, want: registry.ErrUnavailable, also: context.DeadlineExceeded,
	},
	{
		name:    "config slower than the deadline",
		faults:  faults(getBlob(updatecachetest.Fault{Delay: time.Minute})),
		timeout: 500 * time.Millisecond,
		op:      opImageDigest, want: registry.ErrUnavailable, also: context.DeadlineExceeded,
	},
	{name: "manifest bytes corrupted", faults: faults(getManifest(updatecachetest.Fault{Corrupt: true})), op: opImageDigest, want: registry.ErrDigestMismatch},
	{
		name: "registry serves other bytes for a digest",
		faults: func(t *testing.T, f *fixture) []updatecachetest.Fault {
			fl := getManifest(status(200, f.img.Manifest, "Content-Type", f.img.MediaType))
			fl.Path = lie.Encoded()
			return []updatecachetest.Fault{fl}
		},
		op: func(ctx context.Context, p path, c *registry.Client, f *fixture) error {
			_, err := readImage(ctx, p, c, f.ref, lie)
			return err
		},
		want: registry.ErrDigestMismatch,
	},
	{
		name:   "lying Docker-Content-Digest on HEAD",
		faults: faults(head(updatecachetest.Fault{Digest: lie.String()})),
		op: func(ctx context.Context, p path, c *registry.Client, f *fixture) error {
			ch, err := c.Check(ctx, f.ref)
			if err != nil {
				return err
			}
			defer ch.Close()
			if ch.TopDigest() != lie {
				return fmt.Errorf("TopDigest %s, want the lie", ch.TopDigest())
			}
			_, err = ch.Image(ctx)
			return err
		},
		only: checkPath, want: registry.ErrManifestUnknown,
	},
	{
		name:   "lying Docker-Content-Digest on GET is ignored",
		faults: faults(getManifest(updatecachetest.Fault{Digest: lie.String()})),
		op: func(ctx context.Context, p path, c *registry.Client, f *fixture) error {
			img, err := readImage(ctx, p, c, f.ref, "")
			if err == nil && img.TopDigest != f.img.ManifestDigest {
				return fmt.Errorf("TopDigest %s, want the hash of the bytes %s", img.TopDigest, f.img.ManifestDigest)
			}
			return err
		},
	},
	{name: "HEAD without a valid Docker-Content-Digest", faults: faults(head(updatecachetest.Fault{Digest: "sha256:short"})),
		op: opHead, only: checkPath, want: registry.ErrMalformed},
	{name: "manifest over containers/image's limit", faults: faults(getManifest(updatecachetest.Fault{Pad: registry.DefaultMaxManifestSize + 1})),
		op: opImageTag, want: registry.ErrTooLarge},
	{name: "manifest over our cap", opts: registry.Options{MaxManifestSize: 64}, op: opImageTag, want: registry.ErrTooLarge},
	{
		name: "index entry bigger than our cap",
		faults: func(t *testing.T, f *fixture) []updatecachetest.Fault {
			var idx imgspecv1.Index
			if err := json.Unmarshal(f.idx.Manifest, &idx); err != nil {
				t.Fatal(err)
			}
			for i := range idx.Manifests {
				idx.Manifests[i].Size = 1 << 40
			}
			body, err := json.Marshal(idx)
			if err != nil {
				t.Fatal(err)
			}
			return []updatecachetest.Fault{manifestBody(idx.MediaType, string(body))}
		},
		op: func(ctx context.Context, p path, c *registry.Client, f *fixture) error {
			_, err := readImage(ctx, p, c, f.multiRef, "")
			return err
		},
		only: pullPath, multi: true, want: registry.ErrTooLarge,
		check: func(t *testing.T, _ *fixture, n updatecachetest.Counts) {
			if n.ManifestGET != 1 {
				t.Errorf("want the instance refused from its descriptor, without a GET; %v", n)
			}
		},
	},
	{name: "config over our cap", opts: registry.Options{MaxConfigSize: 16}, op: opImageDigest, want: registry.ErrTooLarge,
		check: func(t *testing.T, _ *fixture, n updatecachetest.Counts) {
			if n.BlobGET != 0 {
				t.Errorf("want the config refused from its descriptor, without a GET; %v", n)
			}
		}},
	{name: "config longer than its descriptor", faults: faults(getBlob(updatecachetest.Fault{Pad: 8 << 20})), op: opImageDigest, want: registry.ErrDigestMismatch},
	{
		name: "config shorter than its descriptor",
		faults: func(t *testing.T, f *fixture) []updatecachetest.Fault {
			return []updatecachetest.Fault{getBlob(updatecachetest.Fault{ReplaceBody: f.img.Config.Data[:len(f.img.Config.Data)-1]})}
		},
		op: opImageDigest, want: registry.ErrDigestMismatch,
	},
	{name: "config bytes corrupted", faults: faults(getBlob(updatecachetest.Fault{Corrupt: true})), op: opImageDigest, want: registry.ErrDigestMismatch},
	// Cases that replace a manifest's body change its digest: along the
	// check path, which GETs by the HEAD's digest, they are digest
	// mismatches, so they run along the pull path, which GETs by tag.
	// Parsing is common to both paths.
	{name: "malformed manifest JSON", faults: faults(manifestBody(imgspecv1.MediaTypeImageManifest, `{"schemaVersion":2,"config":`)),
		op: opImageTag, only: pullPath, want: registry.ErrMalformed},
	{name: "manifest without config", faults: faults(manifestBody(imgspecv1.MediaTypeImageManifest, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`)),
		op: opImageTag, only: pullPath, want: registry.ErrMalformed},
	{name: "schema 1 manifest", faults: faults(manifestBody("application/vnd.docker.distribution.manifest.v1+prettyjws",
		`{"schemaVersion":1,"name":"os","tag":"stable","architecture":"amd64","fsLayers":[],"history":[]}`)),
		op: opImageTag, only: pullPath, want: registry.ErrUnsupportedManifest},
	{name: "unknown media type", faults: faults(manifestBody("application/vnd.example.thing+json",
		`{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}`)),
		op: opImageTag, only: pullPath, want: registry.ErrUnsupportedManifest},
	{name: "index without the platform", opts: registry.Options{Platform: &imgspecv1.Platform{OS: "linux", Architecture: "s390x"}},
		op: opImageMulti, multi: true, want: registry.ErrNoMatchingPlatform,
		check: func(t *testing.T, _ *fixture, n updatecachetest.Counts) {
			if n.ManifestGET != 1 || n.BlobGET != 0 {
				t.Errorf("want only the index fetched; %v", n)
			}
		}},
	{
		name: "index instance corrupted",
		faults: func(t *testing.T, f *fixture) []updatecachetest.Fault {
			return []updatecachetest.Fault{{Method: http.MethodGet, Path: f.idx.Images[0].ManifestDigest.Encoded(), Corrupt: true}}
		},
		opts: registry.Options{Platform: &amd64},
		op:   opImageMulti, multi: true, want: registry.ErrDigestMismatch,
	},
	{name: "truncated manifest", faults: faults(getManifest(updatecachetest.Fault{Truncate: true})), op: opImageDigest, want: registry.ErrMalformed},
	{name: "truncated config", faults: faults(getBlob(updatecachetest.Fault{Truncate: true})), op: opImageDigest, want: registry.ErrMalformed},
	{
		name: "redirect loop", faults: func(t *testing.T, f *fixture) []updatecachetest.Fault {
			return []updatecachetest.Fault{getBlob(updatecachetest.Fault{Redirect: f.reg.URL()})}
		},
		op: opImageDigest, want: registry.ErrUnavailable,
	},
	{name: "no fault: the whole check", op: opCheck,
		check: func(t *testing.T, f *fixture, n updatecachetest.Counts) {
			if n.ManifestHEAD != 1 || n.ManifestGET != 1 || n.BlobGET != 1 || n.BlobGETs(f.img.Config.Digest) != 1 {
				t.Errorf("want 1 HEAD, 1 manifest GET, 1 config GET; %v", n)
			}
		}},
}

// TestFaults runs every fault case along both paths against the in-process
// registry and against the real docker-registry behind the fault proxy.
func TestFaults(t *testing.T) {
	forEachEnv(t, func(t *testing.T, e *env) {
		for i, tc := range faultCases {
			t.Run(tc.name, func(t *testing.T) {
				f := &fixture{
					reg: e.reg,
					img: osImage(t, "7.0", amd64, updatecachetest.OCI, updatecachetest.Gzip),
					idx: multiArch(t, "7.0", updatecachetest.OCI),
				}
				repo := fmt.Sprintf("faults/%d", i)
				e.push(t, repo, "stable", f.img)
				f.ref = e.ref(t, repo, "stable")
				if tc.multi {
					e.push(t, repo+"-multi", "stable", f.idx)
					f.multiRef = e.ref(t, repo+"-multi", "stable")
				}
				for _, p := range []path{checkPath, pullPath} {
					if tc.only == "" || tc.only == p {
						t.Run(string(p), func(t *testing.T) { runFault(t, e, f, tc, p) })
					}
				}
			})
		}
	})
}

func runFault(t *testing.T, e *env, f *fixture, tc faultCase, p path) {
	if tc.faults != nil {
		for _, fl := range tc.faults(t, f) {
			e.reg.AddFault(fl)
		}
	}
	defer e.reg.ClearFaults()
	e.reg.Reset()

	timeout := tc.timeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	ctx := ctxFor(t, timeout)
	start := time.Now()
	err := tc.op(ctx, p, e.client(tc.opts), f)
	elapsed := time.Since(start)
	switch {
	case tc.want == nil && err != nil:
		t.Fatalf("want success, got %v", err)
	case tc.want != nil && !errors.Is(err, tc.want):
		t.Fatalf("got %v, want %v", err, tc.want)
	case tc.also != nil && !errors.Is(err, tc.also):
		t.Fatalf("got %v, want it to match %v too", err, tc.also)
	}
	if elapsed > timeout+time.Second {
		t.Errorf("took %v, beyond the %v deadline", elapsed, timeout)
	}
	if tc.check != nil {
		tc.check(t, f, e.reg.Counts())
	}
	t.Logf("%v in %v", err, elapsed.Round(time.Millisecond))
}
