package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/osimage/updatecache/internal/testtool"
)

// registry is a running docker-registry (distribution's reference server)
// with filesystem storage under a work directory.
type registry struct {
	host string
	stop func()
}

// startRegistry runs docker-registry on a free loopback port, as the tests
// do, configured as cfg says, with its files under dir (which it creates).
func startRegistry(dir string, cfg testtool.RegistryConfig) (*registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry not found (install the docker-registry package): %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	host, stop, err := testtool.RunRegistry(bin, dir, cfg)
	if err != nil {
		return nil, err
	}
	return &registry{host: host, stop: stop}, nil
}
