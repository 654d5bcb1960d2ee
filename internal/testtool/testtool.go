// Package testtool lets tests depend on real external programs (the ostree
// tool, the reference registry server) without making "go test ./..." fail on
// a machine that lacks them: a missing tool skips the test with a clear
// message, unless UPDATECACHE_REQUIRE_TOOLS=1 is set (as .ci/run does), in
// which case it fails the test.
package testtool

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireEnv is the environment variable that turns a missing tool from a
// skip into a failure.
const RequireEnv = "UPDATECACHE_REQUIRE_TOOLS"

// Required reports whether missing tools must fail tests rather than skip them.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Need returns the absolute path of the program name, or skips (fails, when
// Required) the test naming the Debian package that provides it.
func Need(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found in PATH (install the Debian package " + debianPackage + ")"
	if Required() {
		t.Fatalf("%s; %s=1 makes this a failure", msg, RequireEnv)
	}
	t.Skipf("skipping: %s; set %s=1 to make this a failure", msg, RequireEnv)
	return ""
}

// Ostree returns the path of the real ostree command line tool.
func Ostree(t testing.TB) string { return Need(t, "ostree", "ostree") }

// RunOstree runs the real ostree tool with args and returns its standard
// output; a non-zero exit fails the test with the tool's standard error.
func RunOstree(t testing.TB, args ...string) string {
	t.Helper()
	out, err := OstreeCommand(t, args...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ostree %v: %v\n%s", args, err, stderr)
	}
	return string(out)
}

// OstreeCommand returns an exec.Cmd for the real ostree tool, for tests
// that expect it to fail or need its exit code.
func OstreeCommand(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	return exec.Command(Ostree(t), args...)
}

// SystemPython is the interpreter Debian's python3-gi belongs to (a
// python3 earlier in PATH, e.g. pyenv's, does not see it).
const SystemPython = "/usr/bin/python3"

// LibostreePython returns SystemPython, or skips (fails, when Required)
// the test unless it can load libostree's GObject bindings (Debian:
// python3-gi, gir1.2-ostree-1.0), the second oracle next to the ostree
// tool: scripts call libostree's own functions.
func LibostreePython(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(SystemPython, "-c", "import gi; gi.require_version('OSTree', '1.0'); from gi.repository import OSTree").CombinedOutput()
	if err != nil {
		msg := SystemPython + " cannot load libostree's bindings (install the Debian packages python3-gi gir1.2-ostree-1.0): " + err.Error() + " " + strings.TrimSpace(string(out))
		if Required() {
			t.Fatal(msg)
		}
		t.Skip("skipping: " + msg)
	}
	return SystemPython
}
