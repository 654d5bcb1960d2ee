package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner runs the peer tools with a private environment: an empty auth
// file, an empty registries.conf and a home of their own, so neither the
// machine's nor the user's configuration changes what they do.
type runner struct {
	dir            string
	authFile       string
	registriesConf string
	policyFile     string // accepts anything, for skopeo copy
	env            []string
}

func newRunner(dir string) (*runner, error) {
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	r := &runner{dir: dir, authFile: filepath.Join(dir, "auth.json"), registriesConf: filepath.Join(dir, "registries.conf"),
		policyFile: filepath.Join(dir, "policy.json")}
	for _, f := range []struct{ path, content string }{
		{r.authFile, "{}\n"},
		{r.registriesConf, ""},
		{r.policyFile, `{"default": [{"type": "insecureAcceptAnything"}]}` + "\n"},
	} {
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			return nil, err
		}
	}
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME", "REGISTRY_AUTH_FILE", "CONTAINERS_REGISTRIES_CONF":
		default:
			r.env = append(r.env, kv)
		}
	}
	r.env = append(r.env, "HOME="+home, "XDG_RUNTIME_DIR="+home, "CONTAINERS_REGISTRIES_CONF="+r.registriesConf)
	return r, nil
}

// skopeo returns the command line of a skopeo command reading
// registriesConf: skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF and reads
// the machine's file unless given its (hidden) global flag.
func skopeo(registriesConf string, args ...string) []string {
	return append([]string{"skopeo", "--registries-conf", registriesConf}, args...)
}

// sample is one run of a command.
type sample struct {
	Wall, CPU time.Duration // CPU: user + system
	MaxRSS    int64         // bytes
}

// gnuTime runs the measured commands. A child started by this (large) Go
// process inherits its peak RSS as its own (Linux records the parent's
// high-water mark when a vfork child execs), so the peak is taken from GNU
// time, whose own child starts from its small address space.
const gnuTime = "/usr/bin/time"

// run executes argv and measures it; a failing command is an error quoting
// its output.
func (r *runner) run(argv ...string) (sample, []byte, error) {
	if _, err := os.Stat(gnuTime); err != nil {
		return sample{}, nil, fmt.Errorf("%s not found (install the time package): %w", gnuTime, err)
	}
	rssFile := filepath.Join(r.dir, "maxrss")
	cmd := exec.Command(gnuTime, append([]string{"-f", "%M", "-o", rssFile}, argv...)...)
	cmd.Env = r.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	s := sample{Wall: time.Since(start)}
	if err != nil {
		return s, nil, fmt.Errorf("%s: %w\n%s%s", strings.Join(argv, " "), err, out.Bytes(), errOut.Bytes())
	}
	// The rusage of time's process includes its waited-for child's CPU.
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	rss, err := os.ReadFile(rssFile)
	if err != nil {
		return s, nil, err
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(rss)), 10, 64)
	if err != nil {
		return s, nil, fmt.Errorf("GNU time's peak RSS %q: %w", rss, err)
	}
	s.MaxRSS = kib << 10
	return s, out.Bytes(), nil
}

// output runs argv unmeasured, so that many can run at once, with
// registriesConf as its registries.conf, and returns its standard output;
// a failing command is an error quoting its output.
func (r *runner) output(ctx context.Context, registriesConf string, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// The last value of a variable is the one a command gets.
	cmd.Env = append(slices.Clip(r.env), "CONTAINERS_REGISTRIES_CONF="+registriesConf)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s%s", strings.Join(argv, " "), err, out.Bytes(), errOut.Bytes())
	}
	return out.Bytes(), nil
}

// summary condenses samples: the median wall time and its spread, the
// median CPU time and the largest RSS.
type summary struct {
	N                int
	Median, Min, Max time.Duration
	P25, P75         time.Duration
	MedianCPU        time.Duration
	MaxRSS           int64
}

func summarize(samples []sample) summary {
	walls := make([]time.Duration, len(samples))
	cpus := make([]time.Duration, len(samples))
	s := summary{N: len(samples)}
	for i, x := range samples {
		walls[i], cpus[i] = x.Wall, x.CPU
		s.MaxRSS = max(s.MaxRSS, x.MaxRSS)
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	sort.Slice(cpus, func(i, j int) bool { return cpus[i] < cpus[j] })
	s.Median, s.Min, s.Max = quantile(walls, 0.5), walls[0], walls[len(walls)-1]
	s.P25, s.P75 = quantile(walls, 0.25), quantile(walls, 0.75)
	s.MedianCPU = quantile(cpus, 0.5)
	return s
}

// quantile interpolates linearly between the sorted values.
func quantile(sorted []time.Duration, q float64) time.Duration {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	frac := pos - float64(i)
	return sorted[i] + time.Duration(frac*float64(sorted[i+1]-sorted[i]))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
