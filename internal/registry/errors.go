package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"syscall"

	"github.com/docker/distribution/registry/api/errcode"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
)

// Sentinel errors. Every error returned by Client wraps at most one of these
// (reachable with errors.Is) together with the underlying cause.
var (
	// ErrManifestUnknown: the image, tag or digest, or one of its blobs
	// (config or layer), is not (or no longer) in the registry (404,
	// MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN).
	ErrManifestUnknown = errors.New("registry: manifest unknown")
	// ErrUnauthorized: the registry refused our credentials or access (401, 403).
	ErrUnauthorized = errors.New("registry: unauthorized")
	// ErrRateLimited: the registry kept answering 429 after the retries
	// containers/image makes, honouring Retry-After. If the context's
	// deadline expires while waiting out a Retry-After, containers/image
	// reports only the deadline, so the error is ErrUnavailable wrapping
	// context.DeadlineExceeded.
	ErrRateLimited = errors.New("registry: rate limited")
	// ErrUnavailable: the registry could not be reached or failed (5xx,
	// connection refused or reset, timeouts, redirect loops). A timeout also
	// wraps context.DeadlineExceeded. Retrying later may help.
	ErrUnavailable = errors.New("registry: unavailable")
	// ErrConfig: the local configuration stops the operation, and retrying
	// will not help until it changes: a registries.conf, registries.d, auth
	// file or certificate directory that cannot be read or parsed, a
	// registry certificate that is not trusted or not for the registry's
	// name, or a registry answering plain HTTP where TLS is required.
	ErrConfig = errors.New("registry: configuration error")
	// ErrDigestMismatch: bytes do not hash to the requested or declared
	// digest, or their size differs from the descriptor's.
	ErrDigestMismatch = errors.New("registry: digest mismatch")
	// ErrTooLarge: a manifest or config is bigger than the configured cap.
	// (A blob longer than its descriptor says is ErrDigestMismatch.)
	ErrTooLarge = errors.New("registry: too large")
	// ErrUnsupportedManifest: schema 1, an unknown media type, or not a
	// container image.
	ErrUnsupportedManifest = errors.New("registry: unsupported manifest")
	// ErrNoMatchingPlatform: an index has no instance for the wanted platform.
	ErrNoMatchingPlatform = errors.New("registry: no matching platform")
	// ErrMalformed: bad JSON, missing or invalid fields, invalid digests,
	// truncated bodies.
	ErrMalformed = errors.New("registry: malformed")
	// ErrBlocked: registries.conf blocks the registry (blocked = true) and
	// no mirror served the image; nothing was sent to the blocked
	// registry.
	ErrBlocked = errors.New("registry: blocked by registries.conf")
	// ErrInsecureRedirect: with TLS verification on, a registry redirected
	// a request (or pointed its token realm) to plain HTTP; the plain-HTTP
	// request was not sent, so no credential or token went out in clear.
	// Hosts registries.conf marks insecure are exempt.
	ErrInsecureRedirect = errors.New("registry: redirect from HTTPS to plain HTTP refused")
	// ErrInvalidReference: the reference cannot be used as asked (e.g.
	// pinning a reference that names no registry repository).
	ErrInvalidReference = errors.New("registry: invalid reference")

	// ErrPolicyUnsupported: signature policies cannot be evaluated because
	// the program was built without the containers_image_openpgp build tag.
	ErrPolicyUnsupported = errors.New("registry: signature policy evaluation not supported (built without the containers_image_openpgp tag)")
	// ErrPolicyInvalid: the signature policy file is missing, unreadable or
	// invalid, so nothing could be decided.
	ErrPolicyInvalid = errors.New("registry: invalid signature policy")
	// ErrPolicyRejected: the signature policy rejects the image
	// (Verdict.Err, for callers that enforce the policy).
	ErrPolicyRejected = errors.New("registry: rejected by signature policy")
)

// wrapf returns an error that matches sentinel and, when cause is non-nil,
// also cause (errors.Is/As see both).
func wrapf(sentinel, cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cause == nil {
		return fmt.Errorf("%w: %s", sentinel, msg)
	}
	return fmt.Errorf("%w: %s: %w", sentinel, msg, cause)
}

// classify maps an error from containers/image (or the network below it) to
// our sentinels, keeping err wrapped. It is the only place that knows how
// containers/image reports registry failures. what names the request, e.g.
// "HEAD manifest"; the caller names the image. The message gives err's
// cause alone (see causeText).
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	if hasSentinel(err) {
		// Already ours, e.g. from our redirect policy deep inside a
		// *url.Error: add the operation only.
		return fmt.Errorf("%s: %w", what, err)
	}
	cause := &causeError{text: causeText(err), err: err}
	if sentinel := sentinelFor(err); sentinel != nil {
		return wrapf(sentinel, cause, "%s", what)
	}
	return fmt.Errorf("%s: %w", what, cause)
}

// causeError is err under a shorter message.
type causeError struct {
	text string
	err  error
}

func (e *causeError) Error() string { return e.text }
func (e *causeError) Unwrap() error { return e.err }

// causeText is what a message needs of an error from containers/image:
// the registry's own words, the HTTP status, or the network's or TLS's
// error. containers/image wraps them in descriptions of the request
// ("reading manifest TAG in HOST/REPO", "pinging container registry
// HOST") that repeat the image and digest the message names already.
func causeText(err error) string {
	var coder errcode.ErrorCoder
	if errors.As(err, &coder) {
		if e, ok := coder.(errcode.Error); ok && e.Message != "" {
			return e.Message
		}
		return coder.ErrorCode().Message()
	}
	if e, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return e.Error()
	}
	if e, ok := errors.AsType[*net.OpError](err); ok {
		return e.Error()
	}
	if e, ok := errors.AsType[*net.DNSError](err); ok {
		return e.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	if status := httpStatus(err); status != 0 {
		return fmt.Sprintf("HTTP status %d %s", status, http.StatusText(status))
	}
	if e, ok := errors.AsType[*url.Error](err); ok {
		return e.Error()
	}
	return err.Error()
}

// sentinels lists every sentinel of this package.
var sentinels = []error{ErrManifestUnknown, ErrUnauthorized, ErrRateLimited, ErrUnavailable,
	ErrDigestMismatch, ErrTooLarge, ErrUnsupportedManifest, ErrNoMatchingPlatform, ErrMalformed,
	ErrBlocked, ErrInsecureRedirect, ErrInvalidReference,
	ErrPolicyUnsupported, ErrPolicyInvalid, ErrPolicyRejected}

// hasSentinel reports whether err already wraps one of our sentinels.
func hasSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// sentinelFor finds the sentinel describing err, or nil.
func sentinelFor(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ErrUnavailable
	case errors.Is(err, context.Canceled):
		// The caller gave up; that says nothing about the registry.
		return nil
	case errors.Is(err, docker.ErrTooManyRequests):
		return ErrRateLimited
	case errors.Is(err, digest.ErrDigestInvalidFormat), errors.Is(err, digest.ErrDigestInvalidLength),
		errors.Is(err, digest.ErrDigestUnsupported):
		return ErrMalformed // e.g. a missing or bad Docker-Content-Digest header
	}
	if _, ok := errors.AsType[docker.ErrUnauthorizedForCredentials](err); ok {
		return ErrUnauthorized
	}
	if isConfigError(err) {
		return ErrConfig
	}
	var coder errcode.ErrorCoder
	if errors.As(err, &coder) {
		if s := codeSentinel(coder); s != nil {
			return s
		}
	}
	if status := httpStatus(err); status != 0 {
		if s := statusSentinel(status); s != nil {
			return s
		}
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return ErrMalformed // the body ended before its Content-Length
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, io.EOF):
		return ErrUnavailable
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return ErrUnavailable
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return ErrUnavailable
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ErrUnavailable
	}
	// Any other failed HTTP exchange: a TLS handshake that failed (an
	// untrusted certificate, one for another name, a plain-HTTP answer), a
	// redirect loop or a redirect to nowhere. The cause stays wrapped, so
	// the message names it.
	if _, ok := errors.AsType[*url.Error](err); ok {
		return ErrUnavailable
	}
	// containers/image reports its body size limit (iolimits.ReadAtMost)
	// and a registry blocked by registries.conf only as text.
	if strings.Contains(err.Error(), "exceeded maximum allowed size") {
		return ErrTooLarge
	}
	if strings.Contains(err.Error(), " is blocked in one of ") {
		return ErrBlocked
	}
	return nil
}

// isConfigError reports errors that only a change of the local
// configuration can fix: certificates not trusted or not for the name, TLS
// required of a plain-HTTP registry, and local files (certificate
// directories, configuration) that cannot be read. No network error is an
// *fs.PathError.
func isConfigError(err error) bool {
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.HostnameError](err); ok {
		return true
	}
	if _, ok := errors.AsType[x509.CertificateInvalidError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return true
	}
	// net/http reports this only as text.
	return strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// codeSentinel maps registry error codes (the JSON "errors" body of the
// distribution spec) to sentinels.
func codeSentinel(coder errcode.ErrorCoder) error {
	code := coder.ErrorCode()
	switch code.String() {
	case "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN":
		return ErrManifestUnknown
	case "UNAUTHORIZED", "DENIED":
		return ErrUnauthorized
	case "TOOMANYREQUESTS":
		return ErrRateLimited
	case "UNAVAILABLE":
		return ErrUnavailable
	}
	// Some registries answer a missing manifest with an unregistered code
	// and a "not found" message; containers/image treats those alike.
	if e, ok := coder.(errcode.Error); ok && code == errcode.ErrorCodeUnknown &&
		strings.Contains(strings.ToLower(e.Message), "not found") {
		return ErrManifestUnknown
	}
	return nil
}

// statusSentinel maps an HTTP status code to a sentinel.
func statusSentinel(status int) error {
	switch {
	case status == 401 || status == 403:
		return ErrUnauthorized
	case status == 404:
		return ErrManifestUnknown
	case status == 429:
		return ErrRateLimited
	case status == 408 || status >= 500:
		return ErrUnavailable
	}
	return nil
}

// httpStatus returns the HTTP status code recorded in err's tree, or 0.
// The check's session records it in statusError; containers/image exports
// it in docker.UnexpectedHTTPStatusError (5xx), but
// a 4xx answer whose body is not registry JSON (every HEAD, most proxies)
// becomes an unexported type whose only typed trace of the status is its
// exported StatusCode field; reading that field by reflection is the one
// way to tell a 404 from a 403 there.
func httpStatus(err error) int {
	if e, ok := errors.AsType[*statusError](err); ok {
		return e.StatusCode
	}
	if e, ok := errors.AsType[docker.UnexpectedHTTPStatusError](err); ok {
		return e.StatusCode
	}
	status := 0
	walkErrors(err, func(e error) bool {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return false
		}
		f := v.FieldByName("StatusCode")
		if f.IsValid() && f.CanInt() {
			status = int(f.Int())
			return true
		}
		return false
	})
	return status
}

// walkErrors visits err's tree depth-first until visit returns true.
func walkErrors(err error, visit func(error) bool) bool {
	if err == nil {
		return false
	}
	if visit(err) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return walkErrors(u.Unwrap(), visit)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if walkErrors(e, visit) {
				return true
			}
		}
	}
	return false
}
