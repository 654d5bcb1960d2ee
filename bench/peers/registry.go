package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// registry is a running docker-registry (distribution's reference server)
// with filesystem storage under a work directory.
type registry struct {
	host string
	cmd  *exec.Cmd
	done chan struct{}
}

// startRegistry runs docker-registry on a free loopback port, as
// internal/testtool does for tests (that package needs a testing.TB, which a
// program has not). Its output goes to dir/registry.log.
func startRegistry(dir string) (*registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry not found (install the docker-registry package): %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	host := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "registry.yml")
	config := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, filepath.Join(dir, "registry-storage"), host)
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	r := &registry{host: host, cmd: exec.Command(bin, "serve", cfg), done: make(chan struct{})}
	r.cmd.Stdout, r.cmd.Stderr = logFile, logFile
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	if err := r.waitReady(20 * time.Second); err != nil {
		r.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, logFile.Name())
	}
	return r, nil
}

// waitReady polls GET /v2/ until the registry answers 200.
func (r *registry) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.host+"/v2/", nil)
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.done:
			return fmt.Errorf("docker-registry exited before answering on %s", r.host)
		case <-ctx.Done():
			return fmt.Errorf("docker-registry did not answer on %s within %v", r.host, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (r *registry) stop() {
	r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.cmd.Process.Kill()
		<-r.done
	}
}
