package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/osimage/updatecache"
)

// bootc's progress protocol (docs/src/experimental-progress-fd.md and
// progress-v0.schema.json in bootc-dev/bootc): JSON Lines on a file
// descriptor the caller passes, one event per line. A Start event comes
// first. A pull is the task "pulling", ProgressBytes events whose bytes
// and steps count what is downloaded (bytesCached and stepsCached what the
// repository had already), one subtask per layer started, complete when
// its bytes reach its bytesTotal; then the task "importing", ProgressSteps
// of one step, the merge commit.
const (
	progressProtocolVersion = "0.1.0"
	// progressInterval spaces out the events that only move bytes along,
	// as bootc does (5 a second); a layer's end, and the start and end of
	// a task, are always written.
	progressInterval = 200 * time.Millisecond
)

type startEvent struct {
	Type    string `json:"type"` // "Start"
	Version string `json:"version"`
}

type bytesEvent struct {
	Type        string         `json:"type"` // "ProgressBytes"
	Task        string         `json:"task"`
	Description string         `json:"description"`
	ID          string         `json:"id"`
	BytesCached int64          `json:"bytesCached"`
	Bytes       int64          `json:"bytes"`
	BytesTotal  int64          `json:"bytesTotal"`
	StepsCached int            `json:"stepsCached"`
	Steps       int            `json:"steps"`
	StepsTotal  int            `json:"stepsTotal"`
	Subtasks    []bytesSubtask `json:"subtasks"`
}

type bytesSubtask struct {
	Subtask     string `json:"subtask"` // "layer"
	Description string `json:"description"`
	ID          string `json:"id"` // the layer's digest
	BytesCached int64  `json:"bytesCached"`
	Bytes       int64  `json:"bytes"`
	BytesTotal  int64  `json:"bytesTotal"`
}

type stepsEvent struct {
	Type        string        `json:"type"` // "ProgressSteps"
	Task        string        `json:"task"`
	Description string        `json:"description"`
	ID          string        `json:"id"`
	StepsCached int           `json:"stepsCached"`
	Steps       int           `json:"steps"`
	StepsTotal  int           `json:"stepsTotal"`
	Subtasks    []stepSubtask `json:"subtasks"`
}

type stepSubtask struct {
	Subtask     string `json:"subtask"`
	Description string `json:"description"`
	ID          string `json:"id"`
	Completed   bool   `json:"completed"`
}

// openProgressFD takes ownership of the inherited descriptor fd, which must
// be open for writing; 0, 1 and 2 are refused, as bootc refuses them.
func openProgressFD(fd int) (*os.File, error) {
	if fd <= 2 {
		return nil, usageError{fmt.Errorf("--progress-fd %d: standard input, output and error cannot carry progress", fd)}
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, usageError{fmt.Errorf("--progress-fd %d: %w", fd, err)}
	}
	if mode := flags & unix.O_ACCMODE; mode != unix.O_WRONLY && mode != unix.O_RDWR {
		return nil, usageError{fmt.Errorf("--progress-fd %d: not open for writing", fd)}
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("progress-fd %d", fd)), nil
}

// progressJSONL writes a pull's progress in bootc's protocol. Its update
// method is a PullOptions.Progress callback; finish ends the stream.
type progressJSONL struct {
	w      io.Writer
	errOut io.Writer // where a failed write is reported, once
	failed bool
	last   time.Time // when the last event was written

	started  bool
	plan     *updatecache.PullPlan
	id       string // the manifest digest
	layers   []int  // indexes of the layers started, in order
	subtasks map[int]*bytesSubtask
	finished int // layers fetched and imported
}

func newProgressJSONL(w, errOut io.Writer) *progressJSONL {
	return &progressJSONL{w: w, errOut: errOut, subtasks: map[int]*bytesSubtask{}}
}

// update is the Progress callback; calls are serialised by the library.
func (j *progressJSONL) update(p updatecache.Progress) {
	switch {
	case p.Plan != nil:
		j.plan, j.id = p.Plan, p.Plan.ManifestDigest.String()
		j.writeBytes(true)
	case p.Merging:
		j.writeBytes(true)
		j.writeImporting(false)
	case p.Reused:
	default:
		st, ok := j.subtasks[p.Index]
		if !ok {
			st = &bytesSubtask{Subtask: "layer", Description: "Layer " + short(p.Layer.String()), ID: p.Layer.String(), BytesTotal: p.Total}
			j.subtasks[p.Index] = st
			j.layers = append(j.layers, p.Index)
		}
		st.Bytes = p.Done
		if p.Finished {
			j.finished++
		}
		j.writeBytes(p.Finished)
	}
}

// finish ends the stream after the pull: the import's completion, or for a
// pull that had nothing to do (the image was deployed already) the pulling
// task done at once.
func (j *progressJSONL) finish(res *updatecache.PullResult) {
	if res == nil {
		return
	}
	if j.plan == nil {
		j.id = res.Pulled.ManifestDigest.String()
		j.writeBytes(true)
		return
	}
	j.writeImporting(true)
}

func (j *progressJSONL) writeBytes(required bool) {
	ev := bytesEvent{Type: "ProgressBytes", Task: "pulling", Description: "Pulling image " + j.id, ID: j.id,
		Subtasks: []bytesSubtask{}}
	if p := j.plan; p != nil {
		ev.BytesCached, ev.BytesTotal = p.Bytes-p.FetchBytes, p.FetchBytes
		ev.StepsCached, ev.StepsTotal = p.Layers-p.FetchLayers, p.FetchLayers
	}
	ev.Steps = j.finished
	for _, i := range j.layers {
		st := j.subtasks[i]
		ev.Subtasks = append(ev.Subtasks, *st)
		ev.Bytes += st.Bytes
	}
	j.write(ev, required)
}

func (j *progressJSONL) writeImporting(done bool) {
	step := 0
	if done {
		step = 1
	}
	j.write(stepsEvent{Type: "ProgressSteps", Task: "importing", Description: "Importing image " + j.id, ID: j.id,
		Steps: step, StepsTotal: 1,
		Subtasks: []stepSubtask{{Subtask: "importing", Description: "Writing the merge commit", ID: "importing", Completed: done}},
	}, true)
}

// write writes one event as a line, after the Start event; an event that
// is not required is dropped when the last was written less than
// progressInterval ago. A failed write is reported once and ends the
// stream; the pull goes on.
func (j *progressJSONL) write(ev any, required bool) {
	if j.failed {
		return
	}
	now := time.Now()
	if !required && now.Sub(j.last) < progressInterval {
		return
	}
	var lines []byte
	if !j.started {
		j.started = true
		start, _ := json.Marshal(startEvent{Type: "Start", Version: progressProtocolVersion})
		lines = append(start, '\n')
	}
	line, err := json.Marshal(ev)
	if err == nil {
		_, err = j.w.Write(append(append(lines, line...), '\n'))
	}
	if err != nil {
		j.failed = true
		fmt.Fprintf(j.errOut, "updatecache: --progress-fd: %v; no more progress is written\n", err)
		return
	}
	j.last = now
}
