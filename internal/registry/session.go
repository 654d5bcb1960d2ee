package registry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	"github.com/docker/go-connections/tlsconfig"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/types"
	"go.podman.io/image/v5/version"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/unshare"
)

// The session is a small client of the distribution API (ping, manifest
// HEAD and GET, blob GET) for the update check, which containers/image
// cannot do in one session: its ImageSource has no HEAD, and its HEAD
// (docker.GetDigest) makes a client of its own that ignores
// registries.conf. Everything that is configuration comes from
// containers/image, so the check reaches the registry as a pull would:
// registries.conf pull sources (location rewrites, mirrors in order,
// pull-from-mirror, blocked, insecure), credentials from the auth files
// and helpers, certs.d directories, TLS and proxy settings and the user
// agent of the SystemContext. What the session does itself follows
// containers/image's docker client: an HTTPS ping with a plain-HTTP retry
// only where TLS verification is off, the first supported challenge of the
// ping deciding the authentication, pull-scoped bearer tokens (GET with
// Basic credentials, or the OAuth2 refresh-token POST for identity
// tokens), 429 retries honouring Retry-After. Each registry host is pinged
// once per session and each token fetched once.

// Values containers/image uses, kept alike so both paths behave the same.
const (
	dockerHubDomain     = "docker.io"
	dockerHubRegistry   = "registry-1.docker.io"
	maxAttempts         = 5 // of a request answered 429
	backoffInitialDelay = 2 * time.Second
	backoffMaxDelay     = 60 * time.Second
	maxRedirects        = 10
	maxErrorBody        = 1 << 20
)

var userAgent = "containers/" + version.Version + " (github.com/containers/image)"

// session is one check's conversation with the pull sources of one
// image reference. It is not safe for concurrent use.
type session struct {
	sys     *types.SystemContext
	plain   *plainHTTPPolicy
	logical reference.Named // the reference as given
	hosts   map[hostKey]*registryHost
	chosen  *endpoint // the source that answered, once one has
}

type hostKey struct {
	name     string
	insecure bool
}

// registryHost is one registry server within a session: its HTTP client
// (with that host's certificates), and what its ping found.
type registryHost struct {
	name      string // host[:port] as dialled
	insecure  bool   // TLS verification off, plain HTTP tried after HTTPS fails
	plain     *plainHTTPPolicy
	userAgent string
	transport *http.Transport
	client    *http.Client

	pinged     bool
	pingErr    error
	scheme     string
	challenges []challenge
	tokens     map[string]*bearerToken // by scope and account
}

// endpoint is one pull source: a repository on a registry host, with the
// credentials for it.
type endpoint struct {
	ref            reference.Named // the source's reference: rewritten name, same tag or digest
	host           *registryHost
	auth           types.DockerAuthConfig
	registryToken  string // SystemContext.DockerBearerRegistryToken
	namespaceProxy string
}

func newSession(sys *types.SystemContext, logical reference.Named) (*session, error) {
	plain, err := newPlainHTTPPolicy(sys)
	if err != nil {
		return nil, err
	}
	return &session{sys: sys, plain: plain, logical: logical, hosts: map[hostKey]*registryHost{}}, nil
}

// close releases the session's idle connections.
func (s *session) close() {
	for _, h := range s.hosts {
		h.transport.CloseIdleConnections()
	}
}

// sources returns the pull sources of ref, which is s.logical or it pinned
// to a digest, in the order containers/image tries them: mirrors (those
// pull-from-mirror allows for a tag or a digest), then the location.
func (s *session) sources(ref reference.Named) ([]sysregistriesv2.PullSource, error) {
	reg, err := sysregistriesv2.FindRegistry(s.sys, ref.Name())
	if err != nil {
		return nil, wrapf(ErrConfig, err, "loading registries.conf")
	}
	if reg == nil {
		reg = &sysregistriesv2.Registry{Prefix: ref.Name(), Endpoint: sysregistriesv2.Endpoint{Location: ref.Name()}}
	}
	return reg.PullSourcesFromReference(ref)
}

// try runs op on each pull source of ref (s.logical, or it pinned to a
// digest) in turn until one succeeds, which becomes the session's chosen
// source. Any failure moves on to the next source, as containers/image
// does when it opens an image; the error of the last source (the
// registry's own location) is returned, the others' quoted.
func (s *session) try(ctx context.Context, ref reference.Named, op func(*endpoint) error) error {
	sources, err := s.sources(ref)
	if err != nil {
		return err
	}
	var failed []string
	for _, src := range sources {
		var e *endpoint
		if e, err = s.endpoint(src); err == nil {
			if err = op(e); err == nil {
				s.chosen = e
				return nil
			}
		}
		if ctx.Err() != nil {
			return err
		}
		failed = append(failed, fmt.Sprintf("[%s: %v]", src.Reference, err))
	}
	if len(failed) <= 1 {
		return err
	}
	return fmt.Errorf("(mirrors also failed: %s): %s: %w", strings.Join(failed[:len(failed)-1], " "),
		sources[len(sources)-1].Reference, err)
}

// endpoint sets up src: refused if registries.conf blocks its registry,
// credentials as containers/image finds them (SystemContext credentials are
// not sent to a mirror on another domain), TLS per registries.conf unless
// the SystemContext decides.
func (s *session) endpoint(src sysregistriesv2.PullSource) (*endpoint, error) {
	physical := src.Reference
	reg, err := sysregistriesv2.FindRegistry(s.sys, physical.Name())
	if err != nil {
		return nil, wrapf(ErrConfig, err, "loading registries.conf")
	}
	if reg != nil && reg.Blocked {
		return nil, fmt.Errorf("%w: %s (prefix %q in %s)", ErrBlocked, physical.Name(), reg.Prefix,
			sysregistriesv2.ConfigurationSourceDescription(s.sys))
	}
	sys := s.sys
	if sys.DockerAuthConfig != nil && reference.Domain(physical) != reference.Domain(s.logical) {
		copied := *sys
		copied.DockerAuthConfig, copied.DockerBearerRegistryToken = nil, ""
		sys = &copied
	}
	auth, err := config.GetCredentialsForRef(sys, physical)
	if err != nil {
		return nil, wrapf(ErrConfig, err, "getting credentials for %s", physical.Name())
	}
	insecure := src.Endpoint.Insecure
	if s.sys.DockerInsecureSkipTLSVerify != types.OptionalBoolUndefined {
		insecure = s.sys.DockerInsecureSkipTLSVerify == types.OptionalBoolTrue
	}
	h, err := s.host(reference.Domain(physical), insecure)
	if err != nil {
		return nil, err
	}
	return &endpoint{ref: physical, host: h, auth: auth, registryToken: sys.DockerBearerRegistryToken,
		namespaceProxy: src.Endpoint.NamespaceProxy}, nil
}

// host returns the session's client for a registry domain.
func (s *session) host(domain string, insecure bool) (*registryHost, error) {
	key := hostKey{domain, insecure}
	if h := s.hosts[key]; h != nil {
		return h, nil
	}
	tlsConfig := &tls.Config{CipherSuites: tlsconfig.ClientDefault().CipherSuites}
	if s.sys.BaseTLSConfig != nil {
		tlsConfig = s.sys.BaseTLSConfig.Clone()
	}
	dir, err := certDir(s.sys, domain)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if err := tlsclientconfig.SetupCertificates(dir, tlsConfig); err != nil {
			return nil, wrapf(ErrConfig, err, "certificates for %s", domain)
		}
	}
	tlsConfig.InsecureSkipVerify = insecure
	tr := tlsclientconfig.NewTransport()
	tr.TLSClientConfig = tlsConfig
	switch {
	case s.sys.DockerProxy != nil:
		proxy := s.sys.DockerProxy
		tr.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
	case s.sys.DockerProxyURL != nil:
		tr.Proxy = http.ProxyURL(s.sys.DockerProxyURL)
	}
	name := domain
	if name == dockerHubDomain {
		name = dockerHubRegistry
	}
	h := &registryHost{name: name, insecure: insecure, plain: s.plain, userAgent: userAgent,
		transport: tr, tokens: map[string]*bearerToken{}}
	if s.sys.DockerRegistryUserAgent != "" {
		h.userAgent = s.sys.DockerRegistryUserAgent
	}
	h.client = &http.Client{Transport: tr, CheckRedirect: h.checkRedirect}
	s.hosts[key] = h
	return h, nil
}

// certDir finds the certs.d directory for a registry as containers/image
// does: the SystemContext's, else the first of the containers
// configuration's certs.d directories and /etc/docker/certs.d that has one
// for host.
func certDir(sys *types.SystemContext, host string) (string, error) {
	if sys.DockerCertPath != "" {
		return sys.DockerCertPath, nil
	}
	if sys.DockerPerHostCertDirPath != "" {
		return filepath.Join(sys.DockerPerHostCertDirPath, host), nil
	}
	paths, err := configfile.GetSearchPaths(&configfile.File{
		Name: "certs", Extension: "d", DoNotUseExtensionForConfigName: true,
		UserId: unshare.GetRootlessUID(), RootForImplicitAbsolutePaths: sys.RootForImplicitAbsolutePaths,
	})
	if err != nil {
		return "", fmt.Errorf("finding certs.d directories: %w", err)
	}
	for _, base := range append(paths.DropInDirectories, filepath.Join(sys.RootForImplicitAbsolutePaths, "/etc/docker/certs.d")) {
		dir := filepath.Join(base, host)
		switch _, err := os.Stat(dir); {
		case err == nil:
			return dir, nil
		case errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		default:
			return "", err
		}
	}
	return "", nil
}

// checkRedirect is Go's redirect policy plus ours: with TLS verification
// on, never to plain HTTP.
func (h *registryHost) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if h.verifiesTLS() && !h.plain.allows(req.URL) {
		return refusePlainHTTP(via[len(via)-1].URL, req.URL)
	}
	return nil
}

func (h *registryHost) verifiesTLS() bool { return !h.insecure }

// ping asks GET /v2/ once per session: over HTTPS, and over plain HTTP if
// that fails where TLS verification is off. It learns the scheme and the
// authentication challenges.
func (h *registryHost) ping(ctx context.Context) error {
	if h.pinged {
		return h.pingErr
	}
	h.pinged = true
	try := func(scheme string) error {
		res, err := h.send(ctx, http.MethodGet, &url.URL{Scheme: scheme, Host: h.name, Path: "/v2/"}, nil, nil)
		if err != nil {
			return err
		}
		defer discard(res)
		if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusUnauthorized {
			return responseError(res)
		}
		h.scheme, h.challenges = scheme, parseChallenges(res.Header)
		return nil
	}
	err := try("https")
	if err != nil && h.insecure {
		err = try("http")
	}
	if err != nil {
		h.pingErr = fmt.Errorf("pinging container registry %s: %w", h.name, err)
	}
	return h.pingErr
}

// send makes one request with containers/image's headers, authorised by
// authorize (nil: no authorisation), retrying while the registry answers
// 429, at most maxAttempts times, waiting what Retry-After says or else
// backing off exponentially. A wait that would outlast ctx's deadline is
// not started: the request fails with ErrRateLimited at once.
func (h *registryHost) send(ctx context.Context, method string, u *url.URL, header http.Header,
	authorize func(context.Context, *http.Request) error) (*http.Response, error) {
	delay := backoffInitialDelay
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, err
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("Docker-Distribution-API-Version", "registry/2.0")
		req.Header.Set("User-Agent", h.userAgent)
		if authorize != nil {
			if err := authorize(ctx, req); err != nil {
				return nil, err
			}
		}
		res, err := h.client.Do(req)
		if err != nil {
			return nil, err
		}
		if res.StatusCode != http.StatusTooManyRequests || attempt == maxAttempts {
			return res, nil
		}
		discard(res)
		delay = min(retryAfter(res, delay), backoffMaxDelay)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay {
			return nil, fmt.Errorf("%w: %s %s: told to retry after %v, beyond the deadline", ErrRateLimited, method, u.Redacted(), delay)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		delay *= 2
	}
}

// retryAfter reads a 429 answer's Retry-After (seconds or a date).
func retryAfter(res *http.Response, fallback time.Duration) time.Duration {
	v := res.Header.Get("Retry-After")
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && time.Until(t) > 0 {
		return time.Until(t)
	}
	return fallback
}

// discard drains a little of a body, so the connection can be reused, and
// closes it.
func discard(res *http.Response) {
	io.CopyN(io.Discard, res.Body, 4<<10)
	res.Body.Close()
}

// do sends a request for a path of e's repository to e's host, pinging the
// host first.
func (e *endpoint) do(ctx context.Context, method, path string, header http.Header) (*http.Response, error) {
	if err := e.host.ping(ctx); err != nil {
		return nil, err
	}
	u := &url.URL{Scheme: e.host.scheme, Host: e.host.name, Path: "/v2/" + e.path() + path}
	if e.namespaceProxy != "" {
		u.RawQuery = url.Values{"ns": {e.namespaceProxy}}.Encode()
	}
	return e.host.send(ctx, method, u, header, e.authorize)
}

// path is the repository's path on its registry.
func (e *endpoint) path() string { return reference.Path(e.ref) }

// acceptManifests is containers/image's Accept header for manifests.
var acceptManifests = http.Header{"Accept": manifest.DefaultRequestedManifestMIMETypes}

// headDigest asks which digest tagOrDigest names: one manifest HEAD.
func (e *endpoint) headDigest(ctx context.Context, tagOrDigest string) (digest.Digest, error) {
	res, err := e.do(ctx, http.MethodHead, "/manifests/"+tagOrDigest, acceptManifests)
	if err != nil {
		return "", err
	}
	defer discard(res)
	if res.StatusCode != http.StatusOK {
		return "", responseError(res)
	}
	d, err := digest.Parse(res.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", fmt.Errorf("Docker-Content-Digest %q: %w", res.Header.Get("Docker-Content-Digest"), err)
	}
	return d, nil
}

// getManifest fetches the manifest d, refusing more than maxSize bytes
// before reading them when the length is declared, and at the first byte
// beyond otherwise.
func (e *endpoint) getManifest(ctx context.Context, d digest.Digest, maxSize int64) ([]byte, string, error) {
	res, err := e.do(ctx, http.MethodGet, "/manifests/"+d.String(), acceptManifests)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, "", responseError(res)
	}
	data, err := readCapped(res.Body, res.ContentLength, maxSize, "manifest")
	if err != nil {
		return nil, "", err
	}
	mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	return data, mt, nil
}

// getBlob opens the blob d; its size is -1 when not declared.
func (e *endpoint) getBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, int64, error) {
	res, err := e.do(ctx, http.MethodGet, "/blobs/"+d.String(), nil)
	if err != nil {
		return nil, 0, err
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		return nil, 0, responseError(res)
	}
	return res.Body, res.ContentLength, nil
}

// readCapped reads r whole unless it is longer than maxSize: declared (if
// not -1) is checked before reading, and no more than maxSize+1 bytes are
// ever read.
func readCapped(r io.Reader, declared, maxSize int64, what string) ([]byte, error) {
	if declared > maxSize {
		return nil, fmt.Errorf("%w: %s of %d bytes, cap %d", ErrTooLarge, what, declared, maxSize)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxSize {
		return nil, fmt.Errorf("%w: %s longer than the cap of %d bytes", ErrTooLarge, what, maxSize)
	}
	return data, nil
}

// statusError is a registry's answer other than success: its status and
// the first entry of its error body, when it has one.
type statusError struct {
	StatusCode int
	status     string
	detail     error // errcode.Error from the body, or nil
	body       string
}

func (e *statusError) Error() string {
	if d, ok := e.detail.(errcode.Error); ok && d.Message == d.Code.Message() {
		return e.status + ": " + d.Message
	}
	switch {
	case e.detail != nil:
		return e.status + ": " + e.detail.Error()
	case e.body != "":
		return fmt.Sprintf("%s: %q", e.status, e.body)
	}
	return e.status
}

func (e *statusError) Unwrap() error { return e.detail }

// responseError reads an unsuccessful answer into a statusError.
func responseError(res *http.Response) error {
	e := &statusError{StatusCode: res.StatusCode, status: res.Status}
	body, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	var errs errcode.Errors
	if json.Unmarshal(body, &errs) == nil && len(errs) > 0 {
		e.detail = errs[0]
	} else if len(body) > 0 {
		e.body = string(body[:min(len(body), 80)])
	}
	return e
}
