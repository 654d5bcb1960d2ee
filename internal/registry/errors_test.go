package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/docker/distribution/registry/api/errcode"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
)

// statusErr stands for containers/image's unexported error types that
// carry an HTTP status in an exported StatusCode field.
type statusErr struct{ StatusCode int }

func (e *statusErr) Error() string { return fmt.Sprintf("StatusCode: %d", e.StatusCode) }

// bodyErr parses a registry error body as containers/image does.
func bodyErr(t *testing.T, code string) error {
	t.Helper()
	var errs errcode.Errors
	if err := json.Unmarshal([]byte(`{"errors":[{"code":"`+code+`","message":"m"}]}`), &errs); err != nil || len(errs) != 1 {
		t.Fatalf("parsing %s: %v", code, err)
	}
	return fmt.Errorf("reading manifest: %w", errs[0])
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: no sentinel
	}{
		{"deadline", fmt.Errorf("Head x: %w", context.DeadlineExceeded), ErrUnavailable},
		{"canceled", fmt.Errorf("Head x: %w", context.Canceled), nil},
		{"429 from containers/image", docker.ErrTooManyRequests, ErrRateLimited},
		{"bad credentials", docker.ErrUnauthorizedForCredentials{Err: errors.New("no")}, ErrUnauthorized},
		{"MANIFEST_UNKNOWN", bodyErr(t, "MANIFEST_UNKNOWN"), ErrManifestUnknown},
		{"NAME_UNKNOWN", bodyErr(t, "NAME_UNKNOWN"), ErrManifestUnknown},
		{"BLOB_UNKNOWN", bodyErr(t, "BLOB_UNKNOWN"), ErrManifestUnknown},
		{"UNAUTHORIZED", bodyErr(t, "UNAUTHORIZED"), ErrUnauthorized},
		{"DENIED", bodyErr(t, "DENIED"), ErrUnauthorized},
		{"TOOMANYREQUESTS", bodyErr(t, "TOOMANYREQUESTS"), ErrRateLimited},
		{"UNAVAILABLE", bodyErr(t, "UNAVAILABLE"), ErrUnavailable},
		{"unregistered code saying not found", errcode.ErrorCodeUnknown.WithMessage("Not Found"), ErrManifestUnknown},
		{"unregistered code", errcode.ErrorCodeUnknown.WithMessage("odd"), nil},
		{"5xx", fmt.Errorf("x: %w", docker.UnexpectedHTTPStatusError{StatusCode: 503}), ErrUnavailable},
		{"408", &statusErr{408}, ErrUnavailable},
		{"status 404", fmt.Errorf("x: %w", &statusErr{404}), ErrManifestUnknown},
		{"status 403", &statusErr{403}, ErrUnauthorized},
		{"status 429", &statusErr{429}, ErrRateLimited},
		{"status 400", &statusErr{400}, nil},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, ErrUnavailable},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), ErrUnavailable},
		{"closed before answering", fmt.Errorf("Get x: %w", io.EOF), ErrUnavailable},
		{"dns", &net.DNSError{Err: "no such host", Name: "registry.invalid"}, ErrUnavailable},
		{"untrusted certificate", fmt.Errorf("pinging container registry h: %w", &url.Error{Op: "Get", URL: "https://h/v2/",
			Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}), ErrConfig},
		{"certificate for another name", &url.Error{Op: "Get", URL: "https://h/v2/",
			Err: &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}}}, ErrConfig},
		{"plain HTTP answer to TLS", &url.Error{Op: "Get", URL: "https://h/v2/", Err: errors.New("http: server gave HTTP response to HTTPS client")}, ErrConfig},
		{"unreadable certificate directory", fmt.Errorf("pinging: %w", &fs.PathError{Op: "open", Path: "/etc/containers/certs.d/h", Err: syscall.EACCES}), ErrConfig},
		{"redirect loop", &url.Error{Op: "Get", URL: "http://h/v2/r/manifests/t", Err: errors.New("stopped after 10 redirects")}, ErrUnavailable},
		{"canceled request", &url.Error{Op: "Get", URL: "http://h/v2/", Err: context.Canceled}, nil},
		{"truncated", fmt.Errorf("reading manifest body: %w", io.ErrUnexpectedEOF), ErrMalformed},
		{"size limit", errors.New("reading manifest body: exceeded maximum allowed size of 4194304 bytes"), ErrTooLarge},
		{"bad digest header", digest.ErrDigestInvalidFormat, ErrMalformed},
		{"blocked", errors.New(`registry r.example is blocked in one of /etc/containers/registries.conf`), ErrBlocked},
		{"other", errors.New("something else"), nil},
		{"ours inside a transport error", &url.Error{Op: "Get", URL: "http://h/v2/", Err: refusePlainHTTP(nil, &url.URL{Scheme: "http", Host: "h"})}, ErrInsecureRedirect},
		{"registry status", &statusError{StatusCode: 404, status: "404 Not Found"}, ErrManifestUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err, "HEAD manifest docker://h/r:t")
			if !errors.Is(got, tc.err) {
				t.Errorf("%v does not wrap the original %v", got, tc.err)
			}
			if !strings.Contains(got.Error(), "HEAD manifest docker://h/r:t") {
				t.Errorf("%v lacks the operation", got)
			}
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == tc.want) {
					t.Errorf("%v: errors.Is(%v) = %v, want sentinel %v", got, s, errors.Is(got, s), tc.want)
				}
			}
		})
	}
	if classify(nil, "x") != nil {
		t.Error("classify(nil) is not nil")
	}
}

// TestClassifyMessage: a classified error's message is the sentinel, the
// request and the cause alone; containers/image's descriptions of the
// request, which repeat the image and digest, are left out (and stay
// wrapped).
func TestClassifyMessage(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, Err: syscall.ECONNREFUSED}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"refused", fmt.Errorf("pinging container registry h: %w", &url.Error{Op: "Get", URL: "http://h/v2/", Err: refused}),
			"registry: unavailable: HEAD manifest: dial tcp 127.0.0.1:5000: connection refused"},
		{"registry's words", bodyErr(t, "MANIFEST_UNKNOWN"), "registry: manifest unknown: HEAD manifest: m"},
		{"status only", fmt.Errorf("reading digest t in h/r: %w", &statusErr{404}),
			"registry: manifest unknown: HEAD manifest: HTTP status 404 Not Found"},
		{"deadline", fmt.Errorf("getting digest t in h/r: %w", context.DeadlineExceeded),
			"registry: unavailable: HEAD manifest: timed out"},
		{"unclassified", errors.New("something else"), "HEAD manifest: something else"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err, "HEAD manifest")
			if got.Error() != tc.want {
				t.Errorf("message %q, want %q", got, tc.want)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("%v does not wrap %v", got, tc.err)
			}
		})
	}
}
