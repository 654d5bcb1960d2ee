package testtool

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
	return startRegistryT(t, "")
}

// StartRegistryWithAuth is StartRegistry with htpasswd basic auth: only
// user with password may pull or push.
func StartRegistryWithAuth(t testing.TB, user, password string) (host string, stop func()) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startRegistryT(t, fmt.Sprintf("auth:\n  htpasswd:\n    realm: updatecache-test\n    path: %s\n", htpasswd))
}

// startRegistryT starts docker-registry with extraConfig appended to its
// configuration, failing t if it does not come up.
func startRegistryT(t testing.TB, extraConfig string) (string, func()) {
	t.Helper()
	bin := Need(t, "docker-registry", "docker-registry")
	host, stop, err := runRegistry(bin, t.TempDir(), extraConfig)
	if err != nil {
		t.Fatalf("starting docker-registry: %v", err)
	}
	t.Cleanup(stop)
	return host, stop
}

// RunRegistry is StartRegistry for programs (the benchmarks), which have no
// testing.TB: it runs the docker-registry binary bin with storage under dir
// and returns its host:port and a stop function that the caller must call.
func RunRegistry(bin, dir string) (host string, stop func(), err error) {
	return runRegistry(bin, dir, "")
}

func runRegistry(bin, dir, extraConfig string) (host string, stop func(), err error) {
	// The port is found by binding and releasing it, so another process
	// may take it in between; a few attempts make that race harmless.
	for range 3 {
		if host, stop, err = startRegistry(bin, dir, extraConfig); err == nil {
			return host, stop, nil
		}
	}
	return "", nil, err
}

func startRegistry(bin, dir, extraConfig string) (string, func(), error) {
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
	if err := waitForPing(host, exited); err != nil {
		stop()
		return "", nil, fmt.Errorf("%w; server output:\n%s", err, stderr.String())
	}
	return host, stop, nil
}

// waitForPing polls GET /v2/ until it answers as a registry does (200, or
// 401 when auth is on), the server exits, or registryStartTimeout passes.
func waitForPing(host string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), registryStartTimeout)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
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
