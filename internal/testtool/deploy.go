package testtool

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// AdminDeploy deploys ref from the repository of sysroot (made with
// `ostree admin init-fs`) as OS osName with the real tool, as an installer
// or `bootc install` would, and returns the deployment's directory. A
// sysroot's repository is bare, so it skips unless root. The immutable
// flag libostree sets on the deployment is cleared when the test ends, so
// its directory can be removed.
func AdminDeploy(t testing.TB, sysroot, osName, ref string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: deploying into a sysroot needs root")
	}
	RunOstree(t, "admin", "os-init", "--sysroot="+sysroot, osName)
	RunOstree(t, "admin", "deploy", "--sysroot="+sysroot, "--os="+osName, ref)
	commit := strings.TrimSpace(RunOstree(t, "rev-parse", "--repo="+filepath.Join(sysroot, "ostree", "repo"), ref))
	dir := filepath.Join(sysroot, "ostree", "deploy", osName, "deploy", commit+".0")
	t.Cleanup(func() { clearImmutable(t, dir) })
	return dir
}

// fsImmutableFlag is FS_IMMUTABLE_FL of linux/fs.h.
const fsImmutableFlag = 0x10

// clearImmutable clears the immutable flag of dir.
func clearImmutable(t testing.TB, dir string) {
	f, err := os.Open(dir)
	if err != nil {
		t.Log(err)
		return
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags&^fsImmutableFlag))
	}
	if err != nil {
		t.Logf("clearing the immutable flag of %s: %v", dir, err)
	}
}
