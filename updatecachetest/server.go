package updatecachetest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
)

// Registry is a registry server on 127.0.0.1 speaking plain HTTP: either an
// in-process registry (StartRegistry, NewRegistry) or a reverse proxy in
// front of any other registry (StartProxy, NewProxy). Either way it counts
// the requests it sees and can inject faults into them (AddFault), so the
// same fault table runs against the in-process registry and a real one.
type Registry struct {
	host    string
	tls     *tls.Config  // non-nil: serving HTTPS
	backend http.Handler // what the middleware serves
	srv     *http.Server
	done    chan struct{} // closed when Serve returns

	mu     sync.Mutex
	counts Counts
	faults []*faultState

	closeOnce sync.Once
	closeErr  error
}

// StartRegistry starts an in-process registry (go-containerregistry's
// pkg/registry, in memory). Close stops it.
func StartRegistry() (*Registry, error) {
	backend := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	return start(backend, nil)
}

// StartProxy starts a counting, fault-injecting reverse proxy to the
// registry at target (e.g. http://127.0.0.1:5000). Close stops it.
func StartProxy(target *url.URL) (*Registry, error) {
	backend, err := newReverseProxy(target, nil)
	if err != nil {
		return nil, err
	}
	return start(backend, nil)
}

// StartTLSProxy is StartProxy serving HTTPS with cert, which it also
// trusts when target is an https:// registry (tests share one
// certificate).
func StartTLSProxy(target *url.URL, cert *Certificate) (*Registry, error) {
	pair, err := tls.X509KeyPair(cert.CertPEM, cert.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cert.CertPEM)
	backend, err := newReverseProxy(target, &tls.Config{RootCAs: roots})
	if err != nil {
		return nil, err
	}
	return start(backend, &tls.Config{Certificates: []tls.Certificate{pair}})
}

// StartServer serves any handler (a TokenIssuer, say) the way a Registry
// is served: on 127.0.0.1, counting requests and applying faults.
func StartServer(handler http.Handler) (*Registry, error) {
	return start(handler, nil)
}

func newReverseProxy(target *url.URL, targetTLS *tls.Config) (*httputil.ReverseProxy, error) {
	if target == nil || target.Scheme == "" || target.Host == "" {
		return nil, fmt.Errorf("updatecachetest: proxy target %v needs a scheme and a host", target)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the registries are on loopback
	tr.TLSClientConfig = targetTLS
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// Keep the client's Host so the registry's upload Location
			// URLs point back through this proxy.
			r.Out.Host = r.In.Host
		},
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}, nil
}

// NewRegistry starts an in-process registry for a test and stops it when
// the test ends.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	return forTest(t)(StartRegistry())
}

// NewProxy starts a proxy to target for a test and stops it when the test
// ends.
func NewProxy(t testing.TB, target *url.URL) *Registry {
	t.Helper()
	return forTest(t)(StartProxy(target))
}

// NewTLSProxy starts an HTTPS proxy to target for a test and stops it when
// the test ends; see StartTLSProxy.
func NewTLSProxy(t testing.TB, target *url.URL, cert *Certificate) *Registry {
	t.Helper()
	return forTest(t)(StartTLSProxy(target, cert))
}

// NewServer serves handler for a test and stops it when the test ends;
// see StartServer.
func NewServer(t testing.TB, handler http.Handler) *Registry {
	t.Helper()
	return forTest(t)(StartServer(handler))
}

// forTest fails t if starting failed, and stops the server when t ends.
func forTest(t testing.TB) func(*Registry, error) *Registry {
	return func(r *Registry, err error) *Registry {
		t.Helper()
		if err != nil {
			t.Fatalf("starting server: %v", err)
		}
		t.Cleanup(r.Stop)
		return r
	}
}

func start(backend http.Handler, tlsConfig *tls.Config) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("updatecachetest: listening: %w", err)
	}
	r := &Registry{host: ln.Addr().String(), tls: tlsConfig, backend: backend}
	r.counts.reset()
	r.serve(ln, r.middleware(backend))
	return r, nil
}

// serve serves handler on ln until Close.
func (r *Registry) serve(ln net.Listener, handler http.Handler) {
	if r.tls != nil {
		ln = tls.NewListener(ln, r.tls)
	}
	r.done = make(chan struct{})
	r.closeOnce = sync.Once{}
	r.srv = &http.Server{Handler: handler, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(r.done)
		r.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
}

// Restart serves again, after Close, on the same address with the same
// content, counts and faults: a registry that went away and came back, as
// the image references that name its host:port expect. Restart and Close
// must not be called concurrently.
func (r *Registry) Restart() error {
	ln, err := net.Listen("tcp", r.host)
	if err != nil {
		return fmt.Errorf("updatecachetest: listening again on %s: %w", r.host, err)
	}
	r.serve(ln, r.srv.Handler)
	return nil
}

// Host returns the server's host:port, e.g. "127.0.0.1:40123".
func (r *Registry) Host() string { return r.host }

// URL returns the server's base URL, e.g. "http://127.0.0.1:40123" (https
// for a TLS proxy).
func (r *Registry) URL() *url.URL {
	if r.tls != nil {
		return &url.URL{Scheme: "https", Host: r.host}
	}
	return &url.URL{Scheme: "http", Host: r.host}
}

// Ref returns a containers-transports reference to repo in this registry:
// "docker://HOST/repo:tag", or "docker://HOST/repo@sha256:…" when
// tagOrDigest is a digest.
func (r *Registry) Ref(repo, tagOrDigest string) string {
	if _, err := digest.Parse(tagOrDigest); err == nil {
		return "docker://" + r.host + "/" + repo + "@" + tagOrDigest
	}
	return "docker://" + r.host + "/" + repo + ":" + tagOrDigest
}

// Close stops the server at once: open connections are closed and later
// requests are refused, which is how a test simulates a registry that went
// away. It is safe to call more than once.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.srv.Close()
		<-r.done
		if rp, ok := r.backend.(*httputil.ReverseProxy); ok {
			rp.Transport.(*http.Transport).CloseIdleConnections()
		}
	})
	return r.closeErr
}

// Stop is Close for tests and cleanups, which have no use for its error
// (closing a listener we own does not fail in practice).
func (r *Registry) Stop() { _ = r.Close() }

// Kind says what a request is for, from its path.
type Kind string

// Request kinds.
const (
	KindPing     Kind = "ping"     // /v2/
	KindManifest Kind = "manifest" // /v2/<name>/manifests/<reference>
	KindBlob     Kind = "blob"     // /v2/<name>/blobs/<digest>
	KindUpload   Kind = "upload"   // /v2/<name>/blobs/uploads/…
	KindToken    Kind = "token"    // …/token (bearer token endpoints)
	KindOther    Kind = "other"
)

// KindOf classifies a request path.
func KindOf(path string) Kind {
	p := strings.TrimSuffix(path, "/")
	elems := strings.Split(p, "/")
	n := len(elems)
	switch {
	case p == "/v2":
		return KindPing
	case elems[n-1] == "token":
		return KindToken
	case !strings.HasPrefix(p, "/v2/"):
		return KindOther
	case strings.Contains(p, "/blobs/uploads"):
		return KindUpload
	case n >= 5 && elems[n-2] == "manifests":
		return KindManifest
	case n >= 5 && elems[n-2] == "blobs":
		return KindBlob
	}
	return KindOther
}

// Counts is a snapshot of the requests a Registry has seen since it started
// or was last Reset.
type Counts struct {
	Total int
	// Per kind, any method.
	Ping, Token, Upload, Other int
	// Manifest requests by method.
	ManifestHEAD, ManifestGET, ManifestPUT, ManifestDELETE int
	// Blob requests by method.
	BlobHEAD, BlobGET int
	// Log lists every request in order, as "METHOD PATH".
	Log []string

	byPath   map[string]int        // "METHOD PATH"
	blobGETs map[digest.Digest]int // by blob digest
}

func (c *Counts) reset() {
	*c = Counts{byPath: map[string]int{}, blobGETs: map[digest.Digest]int{}}
}

func (c *Counts) add(method, path string, kind Kind) {
	c.Total++
	line := method + " " + path
	c.Log = append(c.Log, line)
	c.byPath[line]++
	switch kind {
	case KindPing:
		c.Ping++
	case KindToken:
		c.Token++
	case KindUpload:
		c.Upload++
	case KindOther:
		c.Other++
	case KindManifest:
		switch method {
		case http.MethodHead:
			c.ManifestHEAD++
		case http.MethodGet:
			c.ManifestGET++
		case http.MethodPut:
			c.ManifestPUT++
		case http.MethodDelete:
			c.ManifestDELETE++
		}
	case KindBlob:
		switch method {
		case http.MethodHead:
			c.BlobHEAD++
		case http.MethodGet:
			c.BlobGET++
			c.blobGETs[digest.Digest(path[strings.LastIndexByte(path, '/')+1:])]++
		}
	}
}

// Path returns how many requests had this method and exact path.
func (c Counts) Path(method, path string) int { return c.byPath[method+" "+path] }

// BlobGETs returns how many GETs fetched the blob d, so a test can tell a
// config fetch from a layer fetch.
func (c Counts) BlobGETs(d digest.Digest) int { return c.blobGETs[d] }

// String summarises the counts for test failure messages.
func (c Counts) String() string {
	return fmt.Sprintf("total %d: ping %d, token %d, manifest HEAD %d GET %d PUT %d DELETE %d, blob HEAD %d GET %d, upload %d, other %d; log %q",
		c.Total, c.Ping, c.Token, c.ManifestHEAD, c.ManifestGET, c.ManifestPUT, c.ManifestDELETE,
		c.BlobHEAD, c.BlobGET, c.Upload, c.Other, c.Log)
}

// Counts returns a snapshot of the request counts.
func (r *Registry) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counts
	c.Log = slices.Clone(c.Log)
	c.byPath = maps.Clone(c.byPath)
	c.blobGETs = maps.Clone(c.blobGETs)
	return c
}

// Reset zeroes the request counts (faults stay).
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts.reset()
}

// middleware counts each request and applies the first matching fault.
func (r *Registry) middleware(backend http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		kind := KindOf(req.URL.Path)
		r.mu.Lock()
		r.counts.add(req.Method, req.URL.Path, kind)
		f := r.matchFault(req, kind)
		r.mu.Unlock()
		if f == nil {
			backend.ServeHTTP(w, req)
			return
		}
		f.serve(w, req, backend)
	})
}
