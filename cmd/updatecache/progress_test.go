package main

import (
	"bufio"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache"
	"github.com/osimage/updatecache/updatecachetest"
)

func TestRateMeter(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(1000, 0)
	m.add(t0, 0)
	_, ok := m.rate(t0.Add(500 * time.Millisecond))
	assert.False(t, ok, "no rate before rateMinSpan")
	// 100 kB/s in bursts of 10 kB every 100 ms, read in uneven pieces.
	total := int64(0)
	for i := 1; i <= 100; i++ {
		at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		for _, piece := range []int64{7000, 2000, 1000} {
			total += piece
			m.add(at.Add(time.Duration(piece)), total)
		}
	}
	end := t0.Add(10 * time.Second)
	r, ok := m.rate(end)
	require.True(t, ok)
	assert.InDelta(t, 100e3, r, 5e3)
	assert.Equal(t, "100.0 kB/s 10s", m.describe(end, total+1e6))
	// A stall: the rate falls as time passes with no bytes.
	r2, _ := m.rate(end.Add(5 * time.Second))
	assert.Less(t, r2, r/1.5)
	// Only the window counts: a faster second phase shows at once.
	for i := 1; i <= 60; i++ {
		total += 100e3
		m.add(end.Add(time.Duration(i)*100*time.Millisecond), total)
	}
	r3, _ := m.rate(end.Add(6 * time.Second))
	assert.InDelta(t, 1e6, r3, 0.1e6)
}

// throttledEnv is a CLI environment whose registry sends layer blobs at
// rate bytes per second; v2's two layers of size random bytes are what a
// pull fetches.
func throttledEnv(t *testing.T, size, rate int) (*cliEnv, *updatecachetest.Image) {
	e := newCLIEnv(t)
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() []byte {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	v2, err := updatecachetest.NewImage(updatecachetest.ImageSpec{Version: "2", Architecture: "amd64", Layers: []updatecachetest.Layer{
		{Files: []updatecachetest.File{{Path: "usr/lib/a", Content: random(), Mode: 0o644}}},
		{Files: []updatecachetest.File{{Path: "usr/lib/b", Content: random(), Mode: 0o644}}},
	}})
	require.NoError(t, err)
	e.push(v2)
	for _, l := range v2.Layers {
		e.reg.AddFault(updatecachetest.Fault{Kind: updatecachetest.KindBlob, Path: l.Digest.String(), Throttle: rate})
	}
	return e, v2
}

// TestProgressRateThrottled pulls through a registry that sends each layer
// at 150 kB/s, two at once: the rates the bars show (the total's and each
// layer's) stay within 2x of the bytes counted over the time taken. The
// bar used to feed mpb's average the time since it started, not since the
// last bytes, and showed rates 100 to 700 times too low.
func TestProgressRateThrottled(t *testing.T) {
	const size, rate = 240 << 10, 150_000
	e, _ := throttledEnv(t, size, rate)
	repo, err := updatecache.OpenRepo(e.repo)
	require.NoError(t, err)
	bars := newProgressBars(e.ctx, io.Discard)
	type sample struct{ shown, actual float64 }
	var totals, layers []sample
	var start time.Time
	var sum int64
	done := map[int]int64{}
	sys, err := updatecachetest.SystemContext(t.TempDir())
	require.NoError(t, err)
	opts := updatecache.PullOptions{RegistryOptions: updatecache.RegistryOptions{SystemContext: sys}, Concurrency: 2}
	opts.Progress = func(p updatecache.Progress) {
		bars.update(p)
		now := time.Now()
		if p.Plan != nil {
			start = now
		}
		if p.Layer == "" || p.Reused {
			return
		}
		sum += p.Done - done[p.Index]
		done[p.Index] = p.Done
		elapsed := now.Sub(start).Seconds()
		if shown, ok := bars.meter.rate(now); ok {
			totals = append(totals, sample{shown, float64(sum) / elapsed})
		}
		l := bars.layers[p.Index]
		if shown, ok := l.meter.rate(now); ok {
			layers = append(layers, sample{shown, float64(p.Done) / elapsed})
		}
	}
	res, err := updatecache.Pull(e.ctx, repo, e.ref, opts)
	bars.finish(err == nil)
	require.NoError(t, err)
	took := time.Since(start)
	require.Equal(t, 2, res.LayersFetched)
	t.Logf("pulled %d bytes in %v (%.0f B/s); %d total and %d layer rate samples", res.BytesFetched, took,
		float64(res.BytesFetched)/took.Seconds(), len(totals), len(layers))
	require.NotEmpty(t, totals)
	require.NotEmpty(t, layers)
	lo, hi := 1.0, 1.0
	for _, s := range append(totals, layers...) {
		assert.True(t, s.shown > s.actual/2 && s.shown < s.actual*2, "shown %.0f B/s, actual %.0f B/s", s.shown, s.actual)
		lo, hi = min(lo, s.shown/s.actual), max(hi, s.shown/s.actual)
	}
	t.Logf("shown rate / bytes over time: %.2f to %.2f", lo, hi)
	lastLayer := layers[len(layers)-1].shown
	assert.True(t, lastLayer > rate/2 && lastLayer < rate*2, "a layer's rate shown as %.0f B/s, throttled to %d", lastLayer, rate)
}

// progressSchema compiles bootc's progress-v0 schema (vendored in testdata).
func progressSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile("testdata/progress-v0.schema.json")
	require.NoError(t, err)
	return sch
}

// progressEvent is any event of the protocol, for the assertions.
type progressEvent struct {
	Type        string `json:"type"`
	Task        string `json:"task"`
	ID          string `json:"id"`
	Bytes       int64  `json:"bytes"`
	BytesTotal  int64  `json:"bytesTotal"`
	BytesCached int64  `json:"bytesCached"`
	Steps       int    `json:"steps"`
	StepsTotal  int    `json:"stepsTotal"`
	StepsCached int    `json:"stepsCached"`
	Subtasks    []struct {
		ID         string `json:"id"`
		Bytes      int64  `json:"bytes"`
		BytesTotal int64  `json:"bytesTotal"`
		Completed  bool   `json:"completed"`
	} `json:"subtasks"`
}

// runWithProgressFD runs the command in this process with --progress-fd
// on a pipe, returning its exit code, output and the lines of the pipe.
func (e *cliEnv) runWithProgressFD(args ...string) (code int, stdout, stderr string, lines []string) {
	r, w, err := os.Pipe()
	require.NoError(e.t, err)
	fd, err := unix.Dup(int(w.Fd())) // the command owns and closes its copy
	require.NoError(e.t, err)
	w.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		r.Close()
	})
	code, stdout, stderr = e.run(append([]string{args[0], "--progress-fd", strconv.Itoa(fd)}, args[1:]...)...)
	wg.Wait()
	return code, stdout, stderr, lines
}

// TestProgressFD: pull --progress-fd writes bootc's protocol, every line
// valid against its schema: Start, then the pulling task's byte counts
// (the plan's cached part, each layer a subtask until its bytes reach its
// total, the last event complete), then the importing step, begun and done.
func TestProgressFD(t *testing.T) {
	sch := progressSchema(t)
	e := newCLIEnv(t)
	pull := append([]string{"pull"}, append(e.netArgs(), e.ref)...)
	e.push(e.image("2"))
	code, _, stderr := e.run(pull...)
	require.Equal(t, 0, code, stderr)
	v3 := e.image("3") // its first layer is v2's
	e.push(v3)
	code, _, stderr, lines := e.runWithProgressFD(pull...)
	require.Equal(t, 0, code, stderr)
	events := validateProgress(t, sch, lines)
	require.GreaterOrEqual(t, len(events), 4, "%s", strings.Join(lines, "\n"))
	assert.Equal(t, "Start", events[0].Type)
	var pulling []progressEvent
	for _, ev := range events[1:] {
		if ev.Type == "ProgressBytes" {
			pulling = append(pulling, ev)
		}
	}
	require.NotEmpty(t, pulling)
	last := pulling[len(pulling)-1]
	fetched := v3.Layers[1]
	assert.Equal(t, "pulling", last.Task)
	assert.Equal(t, v3.ManifestDigest.String(), last.ID)
	assert.Equal(t, fetched.Size, last.BytesTotal)
	assert.Equal(t, last.BytesTotal, last.Bytes, "the last ProgressBytes is complete")
	assert.Equal(t, v3.Layers[0].Size, last.BytesCached)
	assert.Equal(t, []int{1, 1, 1}, []int{last.Steps, last.StepsTotal, last.StepsCached})
	require.Len(t, last.Subtasks, 1)
	assert.Equal(t, fetched.Digest.String(), last.Subtasks[0].ID)
	assert.Equal(t, fetched.Size, last.Subtasks[0].Bytes)
	for i := 1; i < len(pulling); i++ {
		assert.GreaterOrEqual(t, pulling[i].Bytes, pulling[i-1].Bytes, "bytes never go back")
	}
	n := len(events)
	require.Equal(t, "ProgressSteps", events[n-2].Type)
	assert.Equal(t, []any{"importing", 0, false}, []any{events[n-2].Task, events[n-2].Steps, events[n-2].Subtasks[0].Completed})
	assert.Equal(t, []any{"importing", 1, true}, []any{events[n-1].Task, events[n-1].Steps, events[n-1].Subtasks[0].Completed})

	// Nothing to pull: the pulling task, complete at once.
	code, _, stderr, lines = e.runWithProgressFD(pull...)
	require.Equal(t, 0, code, stderr)
	events = validateProgress(t, sch, lines)
	require.Len(t, events, 2)
	assert.Equal(t, []any{"ProgressBytes", int64(0), int64(0), v3.ManifestDigest.String()},
		[]any{events[1].Type, events[1].Bytes, events[1].BytesTotal, events[1].ID})

	// A reader that goes away costs the progress, not the pull.
	e.push(e.image("4"))
	r, w, err := os.Pipe()
	require.NoError(t, err)
	r.Close()
	code, _, stderr = e.run(append([]string{"pull", "--progress-fd", strconv.Itoa(int(w.Fd()))}, append(e.netArgs(), e.ref)...)...)
	assert.Equal(t, 0, code, stderr)
	assert.Equal(t, 1, strings.Count(stderr, "--progress-fd"), stderr)
}

// validateProgress checks every line against the schema and decodes it.
func validateProgress(t *testing.T, sch *jsonschema.Schema, lines []string) []progressEvent {
	t.Helper()
	var events []progressEvent
	for _, line := range lines {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
		require.NoError(t, err, line)
		require.NoError(t, sch.Validate(inst), line)
		var ev progressEvent
		require.NoError(t, json.Unmarshal([]byte(line), &ev))
		events = append(events, ev)
	}
	return events
}

// TestProgressFDSchemaCatches: the schema check is not vacuous.
func TestProgressFDSchemaCatches(t *testing.T) {
	sch := progressSchema(t)
	for _, bad := range []string{
		`{"type":"Start"}`,
		`{"type":"ProgressBytes","task":"pulling","description":"","id":"x","bytesCached":0,"bytes":-1,"bytesTotal":0,"stepsCached":0,"steps":0,"stepsTotal":0,"subtasks":[]}`,
		`{"type":"ProgressSteps","task":"importing","description":"","id":"x","stepsCached":0,"steps":0,"stepsTotal":1}`,
	} {
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		require.NoError(t, err)
		assert.Error(t, sch.Validate(inst), bad)
	}
}
