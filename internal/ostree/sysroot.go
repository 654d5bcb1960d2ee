package ostree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotBooted: the system was not booted into an OSTree deployment (the
// kernel command line has no ostree= argument), or that deployment cannot
// be found.
var ErrNotBooted = errors.New("ostree: not booted into an OSTree deployment")

// Deployment is a deployment of an OSTree sysroot:
// ostree/deploy/OSName/deploy/Checksum.Serial, with its origin file.
type Deployment struct {
	OSName   string
	Checksum string // the deployed commit
	Serial   int
	// Origin is the [origin] group of the deployment's .origin file, which
	// says what the deployment tracks (e.g. container-image-reference).
	Origin map[string]string
}

// BootedDeployment finds the deployment the running system booted, as
// libostree does, in the file system at root ("/" on the running system):
// the ostree= kernel argument (in root/proc/cmdline) names a path in the
// sysroot, /ostree/boot.N/OSNAME/BOOTCSUM/N, whose symlinks lead to the
// deployment's directory. The sysroot is root/sysroot where the booted
// system mounts it, else root itself.
func BootedDeployment(root string) (*Deployment, error) {
	cmdlinePath := filepath.Join(root, "proc", "cmdline")
	cmdline, err := readFileCapped(cmdlinePath, 64<<10, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotBooted, err)
	}
	var bootLink string
	for _, arg := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(arg, "ostree="); ok {
			bootLink = v
		}
	}
	if bootLink == "" {
		return nil, fmt.Errorf("%w: no ostree= argument in %s", ErrNotBooted, cmdlinePath)
	}
	var dir string
	for _, sysroot := range []string{filepath.Join(root, "sysroot"), root} {
		if dir, err = filepath.EvalSymlinks(filepath.Join(sysroot, bootLink)); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: ostree=%s: %w", ErrNotBooted, bootLink, err)
	}
	// .../ostree/deploy/OSNAME/deploy/CHECKSUM.SERIAL
	name := filepath.Base(dir)
	checksum, serial, _ := strings.Cut(name, ".")
	n, err := strconv.Atoi(serial)
	osDir := filepath.Dir(filepath.Dir(dir))
	if err != nil || n < 0 || !ValidChecksum(checksum) || filepath.Base(filepath.Dir(dir)) != "deploy" ||
		filepath.Base(filepath.Dir(osDir)) != "deploy" {
		return nil, fmt.Errorf("%w: ostree=%s leads to %s, not a deployment", ErrNotBooted, bootLink, dir)
	}
	d := &Deployment{OSName: filepath.Base(osDir), Checksum: checksum, Serial: n}
	data, err := readFileCapped(dir+".origin", maxConfigSize, 0)
	if err != nil {
		return nil, err
	}
	if d.Origin, err = parseKeyFileGroup(data, "origin"); err != nil {
		return nil, corrupt(dir+".origin", err)
	}
	return d, nil
}
