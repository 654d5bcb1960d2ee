package registry

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// plainHTTPPolicy says which plain-HTTP requests may be sent while TLS
// verification is on. A registry reached over HTTPS may redirect a blob or
// a manifest, or point its token realm, to http://; Go's client follows and
// resends the Authorization header to the same host whatever the port, so
// a Basic credential or a token would go out in clear. Only hosts the
// configuration already declares plain (registries.conf insecure = true,
// or every host when the SystemContext turns TLS verification off) and a
// plain-HTTP lookaside signature store may be reached over HTTP.
type plainHTTPPolicy struct {
	all   bool            // TLS verification is off everywhere
	hosts map[string]bool // host[:port] allowed over plain HTTP
}

// newPlainHTTPPolicy reads the allowed hosts from sys's registries.conf.
func newPlainHTTPPolicy(sys *types.SystemContext) (*plainHTTPPolicy, error) {
	p := &plainHTTPPolicy{hosts: map[string]bool{}}
	switch sys.DockerInsecureSkipTLSVerify {
	case types.OptionalBoolTrue:
		p.all = true
		return p, nil
	case types.OptionalBoolFalse:
		// containers/image then verifies TLS even where registries.conf
		// says insecure.
		return p, nil
	}
	regs, err := sysregistriesv2.GetRegistries(sys)
	if err != nil {
		return nil, wrapf(ErrConfig, err, "loading registries.conf")
	}
	for _, r := range regs {
		for _, ep := range append([]sysregistriesv2.Endpoint{r.Endpoint}, r.Mirrors...) {
			if ep.Insecure {
				host, _, _ := strings.Cut(ep.Location, "/")
				p.hosts[host] = true
			}
		}
	}
	return p, nil
}

// allows reports whether a request to u may be sent.
func (p *plainHTTPPolicy) allows(u *url.URL) bool {
	return u.Scheme != "http" || p.all || p.hosts[u.Host]
}

// refuse returns the error for a refused request from→to.
func refusePlainHTTP(from, to *url.URL) error {
	if from == nil {
		return fmt.Errorf("%w: %s with TLS verification on", ErrInsecureRedirect, to.Redacted())
	}
	return fmt.Errorf("%w: %s to %s with TLS verification on", ErrInsecureRedirect, from.Redacted(), to.Redacted())
}

// guardContainersImage returns a copy of sys whose registry connections,
// made by containers/image for ref, refuse plain-HTTP requests p does not
// allow. containers/image has no redirect hook: its client follows Go's
// default policy. Its one per-request hook is the proxy function
// (SystemContext.DockerProxy), which Go's transport calls for every
// request, redirects included, with the request's URL. That URL alone
// cannot tell a redirect from a first request, but with TLS verification on
// containers/image sends nothing of its own over plain HTTP except to the
// lookaside signature store, which is allowed here; so a plain-HTTP URL
// there is a redirect (or a token realm) and is refused before any
// connection is made. The proxy the SystemContext or the environment
// chooses is kept.
func guardContainersImage(sys *types.SystemContext, ref types.ImageReference, p *plainHTTPPolicy) (*types.SystemContext, error) {
	if p.all || !isDocker(ref) {
		return sys, nil
	}
	allowed := p
	if base, err := docker.SignatureStorageBaseURL(sys, ref, false); err != nil {
		return nil, fmt.Errorf("reading registries.d: %w", err)
	} else if base != nil && base.Scheme == "http" {
		allowed = &plainHTTPPolicy{hosts: map[string]bool{base.Host: true}}
		for h := range p.hosts {
			allowed.hosts[h] = true
		}
	}
	next := sys.DockerProxy
	if next == nil {
		fixed := sys.DockerProxyURL
		next = func(u *url.URL) (*url.URL, error) {
			if fixed != nil {
				return fixed, nil
			}
			return http.ProxyFromEnvironment(&http.Request{URL: u})
		}
	}
	guarded := *sys
	guarded.DockerProxy = func(u *url.URL) (*url.URL, error) {
		if !allowed.allows(u) {
			return nil, refusePlainHTTP(nil, u)
		}
		return next(u)
	}
	return &guarded, nil
}
