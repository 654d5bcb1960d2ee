package testtool

import (
	"bufio"
	"os"
	"os/exec"
	"testing"
)

// LibostreePython returns SystemPython if it can load libostree's GObject
// bindings, or skips (fails, when Required) naming the Debian packages.
func LibostreePython(t testing.TB) string {
	t.Helper()
	return NeedPython(t, "import gi; gi.require_version('OSTree', '1.0'); from gi.repository import OSTree", "python3-gi gir1.2-ostree-1.0")
}

// transactionScript opens a libostree transaction (the repository lock
// shared, a locked staging directory in tmp/), says so, and aborts it when
// its standard input closes.
const transactionScript = `
import sys, gi
gi.require_version('OSTree', '1.0')
from gi.repository import OSTree, Gio
repo = OSTree.Repo.new(Gio.File.new_for_path(sys.argv[1]))
repo.open(None)
repo.prepare_transaction(None)
print('in transaction', flush=True)
sys.stdin.read()
repo.abort_transaction(None)
`

// HoldTransaction has libostree itself open a write transaction on the
// repository at repo and keep it open until release is called (or the test
// ends), as rpm-ostree or bootc do while they pull.
func HoldTransaction(t testing.TB, repo string) (release func()) {
	t.Helper()
	cmd := exec.Command(LibostreePython(t), "-c", transactionScript, repo)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("libostree transaction helper: %v", err)
		}
	}
	t.Cleanup(release)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "in transaction\n" {
		cmd.Process.Kill()
		t.Fatalf("libostree transaction helper said %q, %v", line, err)
	}
	return release
}
