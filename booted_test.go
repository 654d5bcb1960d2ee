package updatecache_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache"
)

func TestBootedImage(t *testing.T) {
	deployment := "ostree/deploy/os/deploy/" + strings.Repeat("0f", 32) + ".1"
	root := func(origin string) string {
		dir := t.TempDir()
		files := map[string]string{
			"proc/cmdline":                         "quiet ostree=/" + deployment + "\n",
			"sysroot/" + deployment + "/etc/issue": "",
			"sysroot/" + deployment + ".origin":    origin,
		}
		for name, content := range files {
			p := filepath.Join(dir, name)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		}
		return dir
	}
	image, err := updatecache.BootedImage(root("[origin]\ncontainer-image-reference=ostree-image-signed:docker://quay.io/os/base:stable\n"))
	require.NoError(t, err)
	assert.Equal(t, "ostree-image-signed:docker://quay.io/os/base:stable", image)

	_, err = updatecache.BootedImage(root("[origin]\nrefspec=fedora:fedora/x86_64/silverblue\n"))
	assert.ErrorIs(t, err, updatecache.ErrNotBooted, "a deployment following an OSTree branch")
}
