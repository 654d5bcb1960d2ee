package updatecachetest

import (
	"fmt"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/types"
)

// SystemContext returns a containers/image SystemContext for talking to
// registries started by this package: plain HTTP is allowed, and every
// configuration file containers/image would read (auth files, registries.conf,
// registries.d, certificates) is an empty one created in dir, so neither the
// machine's nor the user's configuration or credentials leak into a test.
func SystemContext(dir string) (*types.SystemContext, error) {
	authFile := filepath.Join(dir, "auth.json")
	confFile := filepath.Join(dir, "registries.conf")
	for _, f := range []struct{ path, content string }{
		{authFile, "{}\n"},
		{confFile, ""},
	} {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return nil, fmt.Errorf("updatecachetest: %w", err)
		}
	}
	for _, d := range []string{"registries.conf.d", "registries.d", "certs.d", "blob-info-cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("updatecachetest: %w", err)
		}
	}
	return &types.SystemContext{
		AuthFilePath:                authFile,
		SystemRegistriesConfPath:    confFile,
		SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		RegistriesDirPath:           filepath.Join(dir, "registries.d"),
		DockerPerHostCertDirPath:    filepath.Join(dir, "certs.d"),
		BlobInfoCacheDir:            filepath.Join(dir, "blob-info-cache"),
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
	}, nil
}
