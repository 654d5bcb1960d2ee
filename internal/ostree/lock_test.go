package ostree

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/osimage/updatecache/internal/testtool"
)

// setLockTimeout sets core.lock-timeout-secs with the real tool (so
// libostree gives up quickly) and reopens the repository.
func setLockTimeout(t *testing.T, r *Repo, secs string) *Repo {
	t.Helper()
	testtool.RunOstree(t, "config", "--repo="+r.Path(), "set", "core.lock-timeout-secs", secs)
	r, err := Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustLock(t *testing.T, r *Repo, mode LockMode) func() error {
	t.Helper()
	unlock, err := r.Lock(context.Background(), mode)
	if err != nil {
		t.Fatalf("Lock(%v): %v", mode, err)
	}
	return unlock
}

// runOstree runs the real tool and returns its combined output and error.
func runOstree(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := testtool.OstreeCommand(t, args...).CombinedOutput()
	return string(out), err
}

func TestOurLocksExcludeLibostree(t *testing.T) {
	r := setLockTimeout(t, ostreeRepo(t), "1")
	ostreeCommit(t, r, map[string]string{"a": "1"}, "-b", "main")

	unlock := mustLock(t, r, LockExclusive)
	start := time.Now()
	if out, err := runOstree(t, "prune", "--repo="+r.Path(), "--refs-only"); err == nil || !strings.Contains(out, "Locking repo exclusive failed") {
		t.Errorf("ostree prune under our exclusive lock: %v\n%s", err, out)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("ostree prune gave up after %v, before its 1 s lock timeout", d)
	}
	if out, err := runOstree(t, "commit", "--repo="+r.Path(), "-b", "other", "--tree=dir="+t.TempDir()); err == nil {
		t.Errorf("ostree commit under our exclusive lock succeeded:\n%s", out)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Errorf("second unlock: %v", err)
	}

	unlock = mustLock(t, r, LockShared)
	ostreeCommit(t, r, map[string]string{"b": "2"}, "-b", "main") // a transaction coexists with shared
	if out, err := runOstree(t, "prune", "--repo="+r.Path(), "--refs-only"); err == nil {
		t.Errorf("ostree prune under our shared lock succeeded:\n%s", out)
	}
	unlock()
	testtool.RunOstree(t, "prune", "--repo="+r.Path(), "--refs-only")
}

func TestLibostreeTransactionBlocksExclusive(t *testing.T) {
	r := ostreeRepo(t)
	r.lockTimeout = 300 * time.Millisecond

	// `ostree commit --tree=tar=FIFO` holds the shared lock for its
	// transaction while it waits for the tar stream we have not sent yet.
	finish := startFifoCommit(t, r, "fifo")

	start := time.Now()
	_, err := r.Lock(context.Background(), LockExclusive)
	if !errors.Is(err, ErrLockTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock(Exclusive) during an ostree transaction: %v; want ErrLockTimeout", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("Lock(Exclusive) gave up after %v; LockTimeout is 300ms", d)
	}
	if !strings.Contains(err.Error(), "exclusive") {
		t.Errorf("timeout error does not name the mode: %v", err)
	}
	unlock := mustLock(t, r, LockShared)
	unlock()

	// Finish the transaction: the commit lands, and the lock is free.
	finish()
	unlock = mustLock(t, r, LockExclusive)
	unlock()
}

// waitHeld waits until another process holds the repository lock, seen as
// our exclusive try failing.
func waitHeld(t *testing.T, r *Repo) {
	t.Helper()
	probe := *r
	probe.lockTimeout = 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		unlock, err := probe.Lock(context.Background(), LockExclusive)
		if errors.Is(err, ErrLockTimeout) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		unlock()
		if time.Now().After(deadline) {
			t.Fatal("the other process never took the repository lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// libostreeLockScript takes a libostree repository lock through its GObject
// bindings, says so, and holds it until its standard input closes.
const libostreeLockScript = `
import sys, gi
gi.require_version('OSTree', '1.0')
from gi.repository import OSTree, Gio
repo = OSTree.Repo.new(Gio.File.new_for_path(sys.argv[1]))
repo.open(None)
mode = OSTree.RepoLockType.EXCLUSIVE if sys.argv[2] == 'exclusive' else OSTree.RepoLockType.SHARED
repo.lock_push(mode, None)
print('locked', flush=True)
sys.stdin.read()
`

func TestLibostreeLocksFromOutside(t *testing.T) {
	python := testtool.LibostreePython(t)
	for _, tc := range []struct {
		theirs      string
		sharedOK    bool
		exclusiveOK bool
	}{
		{"shared", true, false},
		{"exclusive", false, false},
	} {
		t.Run(tc.theirs, func(t *testing.T) {
			r := ostreeRepo(t)
			r.lockTimeout = 200 * time.Millisecond
			cmd := exec.Command(python, "-c", libostreeLockScript, r.Path(), tc.theirs)
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
			defer cmd.Process.Kill()
			if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
				t.Fatalf("lock helper said %q, %v", line, err)
			}
			for mode, wantOK := range map[LockMode]bool{LockShared: tc.sharedOK, LockExclusive: tc.exclusiveOK} {
				unlock, err := r.Lock(context.Background(), mode)
				if wantOK && err != nil || !wantOK && !errors.Is(err, ErrLockTimeout) {
					t.Errorf("Lock(%v) while libostree holds %s: %v; want success = %v", mode, tc.theirs, err, wantOK)
				}
				if err == nil {
					unlock()
				}
			}
			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			unlock := mustLock(t, r, LockExclusive)
			unlock()
		})
	}
}

func TestLockInProcess(t *testing.T) {
	r, err := Create(filepath.Join(t.TempDir(), "repo"), ModeArchive)
	if err != nil {
		t.Fatal(err)
	}
	r.lockTimeout = 150 * time.Millisecond
	ctx := context.Background()

	// Shared holders coexist; exclusive excludes both ways, also between
	// descriptors of one process (OFD locks are per open file description).
	s1 := mustLock(t, r, LockShared)
	s2 := mustLock(t, r, LockShared)
	if _, err := r.Lock(ctx, LockExclusive); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("Lock(Exclusive) with shared holders: %v; want ErrLockTimeout", err)
	}
	s1()
	s2()
	x := mustLock(t, r, LockExclusive)
	for _, mode := range []LockMode{LockShared, LockExclusive} {
		if _, err := r.Lock(ctx, mode); !errors.Is(err, ErrLockTimeout) {
			t.Errorf("Lock(%v) while exclusive is held: %v; want ErrLockTimeout", mode, err)
		}
	}

	// A waiter gets the lock once it is released.
	got := make(chan error, 1)
	r2 := *r
	r2.lockTimeout = 10 * time.Second
	go func() {
		unlock, err := r2.Lock(ctx, LockShared)
		if err == nil {
			unlock()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	x()
	if err := <-got; err != nil {
		t.Errorf("waiting Lock(Shared): %v", err)
	}

	// Cancellation ends the wait, matching both ErrLockTimeout and the
	// context's error; a negative LockTimeout waits for ctx alone.
	x = mustLock(t, r, LockExclusive)
	defer x()
	r2.lockTimeout = -1
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := r2.Lock(cctx, LockShared); !errors.Is(err, ErrLockTimeout) || !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a cancelled context: %v; want ErrLockTimeout and context.Canceled", err)
	}
	if _, err := r.Lock(ctx, LockMode(7)); err == nil {
		t.Error("Lock with an invalid mode succeeded")
	}
	if info, err := os.Stat(filepath.Join(r.Path(), ".lock")); err != nil || info.Mode().Perm()&^0o660 != 0 {
		t.Errorf(".lock: %v, %v; want mode within 0660", info, err)
	}
}
