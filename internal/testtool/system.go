package testtool

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// SystemPython is the interpreter Debian's python3-* packages install
// into; a python3 earlier in PATH (pyenv's, say) does not see them.
const SystemPython = "/usr/bin/python3"

// NeedPython returns SystemPython once it runs the snippet probe (say, an
// import) successfully, or skips (fails, when Required) the test naming
// the Debian packages that provide what probe needs.
func NeedPython(t testing.TB, probe, debianPackages string) string {
	t.Helper()
	out, err := exec.Command(SystemPython, "-c", probe).CombinedOutput()
	if err == nil {
		return SystemPython
	}
	msg := SystemPython + " cannot run " + strings.TrimSpace(probe) + " (install the Debian packages " + debianPackages + "): " +
		err.Error() + " " + strings.TrimSpace(string(out))
	if Required() {
		t.Fatalf("%s; %s=1 makes this a failure", msg, RequireEnv)
	}
	t.Skipf("skipping: %s; set %s=1 to make this a failure", msg, RequireEnv)
	return ""
}

// NeedFile skips (fails, when Required) the test unless path exists,
// naming the Debian package that installs it.
func NeedFile(t testing.TB, path, debianPackage string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	msg := path + " not found (install the Debian package " + debianPackage + ")"
	if Required() {
		t.Fatalf("%s; %s=1 makes this a failure", msg, RequireEnv)
	}
	t.Skipf("skipping: %s; set %s=1 to make this a failure", msg, RequireEnv)
}
