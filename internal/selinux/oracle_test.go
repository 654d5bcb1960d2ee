package selinux

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/osimage/updatecache/internal/testtool"
)

// libselinuxDriver answers lookups with the real libselinux, the way
// libostree 2022.7 sets it up: selinux_set_policy_root(root), then
// selabel_open(SELABEL_CTX_FILE, NULL, 0) and selabel_lookup_raw. It goes
// through ctypes so that paths can be any bytes (hex on the wire).
// Commands, one a line: "open HEXROOT" -> "ok" | "err ERRNO";
// "MODE HEXPATH" -> "L LABEL" | "E ERRNO"; "flush"; "bench N" runs the
// queued "MODE HEXPATH" lines N times round and answers with the
// nanoseconds per lookup, less the cost of a ctypes call.
const libselinuxDriver = `
import ctypes, sys, time
lib = ctypes.CDLL("libselinux.so.1", use_errno=True)
lib.selinux_set_policy_root.argtypes = [ctypes.c_char_p]
lib.selabel_open.restype = ctypes.c_void_p
lib.selabel_open.argtypes = [ctypes.c_uint, ctypes.c_void_p, ctypes.c_uint]
lib.selabel_close.argtypes = [ctypes.c_void_p]
lib.selabel_lookup_raw.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_int]
lib.freecon.argtypes = [ctypes.c_void_p]
libc = ctypes.CDLL(None)
libc.strlen.argtypes = [ctypes.c_char_p]
out = sys.stdout.buffer
h = None
queued = []
for line in sys.stdin.buffer:
    parts = line.split()
    if parts[0] == b"open":
        if h:
            lib.selabel_close(h)
        ctypes.set_errno(0)
        h = None
        if lib.selinux_set_policy_root(bytes.fromhex(parts[1].decode())) == 0:
            h = lib.selabel_open(0, None, 0)
        out.write(b"ok\n" if h else b"err %d\n" % ctypes.get_errno())
    elif parts[0] == b"flush":
        out.flush()
    elif parts[0] == b"bench":
        rounds = int(parts[1])
        con = ctypes.c_void_p()
        ref = ctypes.byref(con)
        t0 = time.perf_counter_ns()
        for _ in range(rounds):
            for mode, key in queued:
                if lib.selabel_lookup_raw(h, ref, key, mode) == 0:
                    lib.freecon(con)
        t1 = time.perf_counter_ns()
        for _ in range(rounds):
            for mode, key in queued:
                libc.strlen(key)
        t2 = time.perf_counter_ns()
        n = rounds * len(queued)
        out.write(b"%d\n" % (((t1 - t0) - (t2 - t1)) // n))
        out.flush()
    elif parts[0] == b"queue":
        queued.append((int(parts[1]), bytes.fromhex(parts[2].decode()) if len(parts) > 2 else b""))
    else:
        key = bytes.fromhex(parts[1].decode()) if len(parts) > 1 else b""
        con = ctypes.c_void_p()
        ctypes.set_errno(0)
        if lib.selabel_lookup_raw(h, ctypes.byref(con), key, int(parts[0])) == 0:
            out.write(b"L " + ctypes.string_at(con.value) + b"\n")
            lib.freecon(con)
        else:
            out.write(b"E %d\n" % ctypes.get_errno())
`

// driver is a running python script answering line by line.
type driver struct {
	t   testing.TB
	in  io.WriteCloser
	out *bufio.Reader
}

// startDriver runs script with python until the test ends.
func startDriver(t testing.TB, python, script string) driver {
	t.Helper()
	cmd := exec.Command(python, "-c", script)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("python driver: %v\n%s", err, stderr.String())
		}
	})
	return driver{t: t, in: in, out: bufio.NewReader(out)}
}

func (d driver) readLine() string {
	d.t.Helper()
	line, err := d.out.ReadString('\n')
	if err != nil {
		d.t.Fatalf("python driver: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

// libselinux is a running libselinuxDriver.
type libselinux struct{ driver }

// startLibselinux starts the driver, skipping the test without python3
// or libselinux.
func startLibselinux(t testing.TB) *libselinux {
	t.Helper()
	python := testtool.NeedPython(t, `import ctypes; ctypes.CDLL("libselinux.so.1").selabel_lookup_raw`, "python3 libselinux1")
	return &libselinux{startDriver(t, python, libselinuxDriver)}
}

// open makes root (a policy type's directory) the policy for the next
// lookups; it returns libselinux's errno when selabel_open fails.
func (l *libselinux) open(root string) syscall.Errno {
	l.t.Helper()
	fmt.Fprintf(l.in, "open %x\nflush\n", root)
	reply := l.readLine()
	if reply == "ok" {
		return 0
	}
	errno, err := strconv.Atoi(strings.TrimPrefix(reply, "err "))
	if err != nil {
		l.t.Fatalf("libselinux driver: %q", reply)
	}
	return syscall.Errno(errno)
}

// query is one lookup.
type query struct {
	path string
	mode uint32
}

// answer is a lookup's result: a label, or the errno of a failed lookup
// (ENOENT for "no label", anything else, 0 included, a failure).
type answer struct {
	ok    bool
	label string
	errno syscall.Errno
}

func (a answer) String() string {
	if a.ok {
		return a.label
	}
	return fmt.Sprintf("errno %d (%v)", int(a.errno), a.errno)
}

// lookup answers queries with libselinux, in one batch.
func (l *libselinux) lookup(queries []query) []answer {
	l.t.Helper()
	go func() {
		w := bufio.NewWriter(l.in)
		for _, q := range queries {
			fmt.Fprintf(w, "%d %s\n", q.mode, hex.EncodeToString([]byte(q.path)))
		}
		fmt.Fprintf(w, "flush\n")
		w.Flush()
	}()
	answers := make([]answer, len(queries))
	for i := range queries {
		reply := l.readLine()
		if label, ok := strings.CutPrefix(reply, "L "); ok {
			answers[i] = answer{ok: true, label: label}
			continue
		}
		errno, err := strconv.Atoi(strings.TrimPrefix(reply, "E "))
		if err != nil {
			l.t.Fatalf("libselinux driver: %q", reply)
		}
		answers[i] = answer{errno: syscall.Errno(errno)}
	}
	return answers
}

// goAnswer is Lookup's result in the form of an answer.
func goAnswer(p *Policy, q query) answer {
	label, ok, err := p.Lookup(q.path, q.mode)
	switch {
	case err != nil:
		return answer{errno: syscall.EINVAL}
	case !ok:
		return answer{errno: syscall.ENOENT}
	}
	return answer{ok: true, label: label}
}

// compareWithLibselinux looks every query up both ways and reports each
// difference (up to a limit), returning how many there were.
func compareWithLibselinux(t *testing.T, l *libselinux, p *Policy, queries []query) int {
	t.Helper()
	want := l.lookup(queries)
	diffs := 0
	for i, q := range queries {
		if got := goAnswer(p, q); got != want[i] {
			if diffs++; diffs <= 20 {
				t.Errorf("Lookup(%q, %#o) = %v; libselinux says %v", q.path, q.mode, got, want[i])
			}
		}
	}
	return diffs
}
