package registry

import (
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
)

// checkConfig reads the local configuration a registry reference depends
// on (registries.conf, the registries.d signature storage files and the
// auth files), so that a file that is missing where a directory should be,
// unreadable or malformed is reported as ErrConfig before any request,
// rather than as whatever containers/image makes of it mid-way.
func (c *Client) checkConfig(ref types.ImageReference) error {
	if !isDocker(ref) {
		return nil
	}
	if _, err := sysregistriesv2.TryUpdatingCache(c.sys); err != nil {
		return wrapf(ErrConfig, err, "registries.conf")
	}
	if _, err := docker.SignatureStorageBaseURL(c.sys, ref, false); err != nil {
		return wrapf(ErrConfig, err, "registries.d")
	}
	if _, err := config.GetCredentialsForRef(c.sys, ref.DockerReference()); err != nil {
		return wrapf(ErrConfig, err, "credentials")
	}
	return nil
}
