package testtool

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// registryStartTimeout bounds how long StartRegistry waits for the server.
const registryStartTimeout = 20 * time.Second

// StartRegistry runs the real registry server (docker-registry, the
// distribution project's reference implementation) on a free loopback port
// with in-temp-dir filesystem storage, deletes enabled and no auth. It
// returns the server's host:port and a stop function; stop may be called
// early to simulate a registry going away and is also called when the test
// ends. A missing docker-registry skips the test (fails when Required).
func StartRegistry(t testing.TB) (host string, stop func()) {
	t.Helper()
	return StartRegistryWith(t, RegistryConfig{})
}

// RegistryConfig says how StartRegistryWith runs docker-registry; the
// zero value is StartRegistry's set-up.
type RegistryConfig struct {
	// HTPasswd, if set, turns on basic auth (auth: htpasswd) for these
	// users and passwords.
	HTPasswd map[string]string
	// Token, if set, turns on bearer-token auth (auth: token).
	Token *TokenAuth
	// TLSCert and TLSKey (PEM), if set, make the registry serve HTTPS.
	TLSCert, TLSKey []byte
	// ProxyRemoteURL, if set, makes the registry a pull-through cache of
	// that registry (proxy: remoteurl), which it reaches with
	// ProxyUsername and ProxyPassword if set. It then refuses pushes.
	ProxyRemoteURL               string
	ProxyUsername, ProxyPassword string
}

// TokenAuth is distribution's token authentication: clients get tokens at
// Realm for Service, signed by Issuer with a key whose certificate chains
// to RootCertBundle (PEM).
type TokenAuth struct {
	Realm, Service, Issuer string
	RootCertBundle         []byte
}

// StartRegistryWith is StartRegistry with auth, TLS or proxy mode as cfg
// says.
func StartRegistryWith(t testing.TB, cfg RegistryConfig) (host string, stop func()) {
	t.Helper()
	bin := Need(t, "docker-registry", "docker-registry")
	host, stop, err := RunRegistry(bin, t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	t.Cleanup(stop)
	return host, stop
}

// yaml returns the configuration cfg adds, writing the files it names in
// dir.
func (cfg RegistryConfig) yaml(dir string) (string, error) {
	var b strings.Builder
	write := func(name string, data []byte) (string, error) {
		p := filepath.Join(dir, name)
		return p, os.WriteFile(p, data, 0o600)
	}
	if len(cfg.TLSCert) > 0 {
		cert, err := write("tls.crt", cfg.TLSCert)
		if err != nil {
			return "", err
		}
		key, err := write("tls.key", cfg.TLSKey)
		if err != nil {
			return "", err
		}
		// Indented under the http: section, which the base config ends with.
		fmt.Fprintf(&b, "  tls:\n    certificate: %s\n    key: %s\n", cert, key)
	}
	switch {
	case cfg.HTPasswd != nil && cfg.Token != nil:
		return "", fmt.Errorf("testtool: a registry takes one kind of auth")
	case cfg.HTPasswd != nil:
		var lines []byte
		for user, password := range cfg.HTPasswd {
			hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
			if err != nil {
				return "", err
			}
			lines = fmt.Appendf(lines, "%s:%s\n", user, hash)
		}
		p, err := write("htpasswd", lines)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: updatecache-test\n    path: %s\n", p)
	case cfg.Token != nil:
		p, err := write("token-roots.pem", cfg.Token.RootCertBundle)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
			cfg.Token.Realm, cfg.Token.Service, cfg.Token.Issuer, p)
	}
	if cfg.ProxyRemoteURL != "" {
		fmt.Fprintf(&b, "proxy:\n  remoteurl: %s\n", cfg.ProxyRemoteURL)
		if cfg.ProxyUsername != "" {
			fmt.Fprintf(&b, "  username: %s\n  password: %s\n", cfg.ProxyUsername, cfg.ProxyPassword)
		}
	}
	return b.String(), nil
}

// RunRegistry is StartRegistryWith for programs (the benchmarks), which
// have no testing.TB: it runs the docker-registry binary bin as cfg says,
// with its configuration and storage under dir (one directory per
// registry), and returns its host:port and a stop function that the caller
// must call.
func RunRegistry(bin, dir string, cfg RegistryConfig) (host string, stop func(), err error) {
	extra, err := cfg.yaml(dir)
	if err != nil {
		return "", nil, err
	}
	return runRegistry(bin, dir, extra, len(cfg.TLSCert) > 0)
}

func runRegistry(bin, dir, extraConfig string, tls bool) (host string, stop func(), err error) {
	// The port is found by binding and releasing it, so another process
	// may take it in between; a few attempts make that race harmless.
	for range 3 {
		if host, stop, err = startRegistry(bin, dir, extraConfig, tls); err == nil {
			return host, stop, nil
		}
	}
	return "", nil, err
}

func startRegistry(bin, dir, extraConfig string, tls bool) (string, func(), error) {
	host, err := freeLoopbackAddr()
	if err != nil {
		return "", nil, err
	}
	storage := filepath.Join(dir, "storage-"+filepath.Base(host))
	cfg := filepath.Join(dir, "config.yml")
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
%s`, storage, host, extraConfig)
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return "", nil, err
	}

	stderr := &lockedBuffer{}
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		})
	}
	if err := waitForPing(host, tls, exited); err != nil {
		stop()
		return "", nil, fmt.Errorf("%w; server output:\n%s", err, stderr.String())
	}
	return host, stop, nil
}

// waitForPing polls GET /v2/ until it answers as a registry does (200, or
// 401 when auth is on), the server exits, or registryStartTimeout passes.
// Over HTTPS it does not verify the certificate: it only waits.
func waitForPing(host string, useTLS bool, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), registryStartTimeout)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	scheme := "http"
	if useTLS {
		scheme = "https"
	}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+"/v2/", nil)
		if err != nil {
			return err
		}
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK || res.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("docker-registry exited before answering on %s", host)
		case <-ctx.Done():
			return fmt.Errorf("docker-registry did not answer GET /v2/ on %s within %v", host, registryStartTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port free just now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// lockedBuffer collects a child's output written from another goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
