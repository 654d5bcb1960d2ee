package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/osimage/updatecache/internal/ostree"
)

// Bounds of what the reading side of an import may hand the writing side
// ahead of time: up to queuedWrites objects of up to queuedObjectSize
// bytes each (so at most 16 MiB); a larger object is handed over streaming
// and the reader waits for it.
const (
	queuedWrites     = 64
	queuedObjectSize = 256 << 10
)

// stageWriter writes an import's objects to its Stage in a goroutine of
// its own, in the order they are queued, so that reading the layer
// (decompressing, hashing the blob and the tar, parsing) and writing the
// objects (hashing each, one file and a few system calls per object)
// overlap. Only the writer touches the Stage until wait returns.
type stageWriter struct {
	ctx    context.Context
	stage  *ostree.Stage
	jobs   chan *writeJob
	done   chan struct{}
	failed atomic.Bool
	err    error // the first error; read after done is closed
}

// writeJob is one object to write: a dirtree or dirmeta object (t set,
// data its bytes) or a content object (meta, size, and data or stream).
type writeJob struct {
	name     string // the tar entry, for errors
	checksum string // what the object must hash to
	t        ostree.ObjectType
	meta     ostree.FileMeta
	size     int64
	data     []byte
	stream   io.Reader     // content too large to queue
	written  chan struct{} // closed once a streamed job is done
}

func newStageWriter(ctx context.Context, st *ostree.Stage) *stageWriter {
	w := &stageWriter{ctx: ctx, stage: st, jobs: make(chan *writeJob, queuedWrites), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *stageWriter) run() {
	defer close(w.done)
	for job := range w.jobs {
		if w.err == nil {
			if err := w.write(job); err != nil {
				w.err = &EntryError{Name: job.name, Err: err}
				w.failed.Store(true)
			}
		}
		if job.written != nil {
			close(job.written)
		}
	}
}

// write writes one object and checks its checksum.
func (w *stageWriter) write(job *writeJob) error {
	if job.t != "" {
		_, err := w.stage.WriteMetadata(w.ctx, job.t, job.data)
		if errors.Is(err, ostree.ErrCorrupt) {
			return fmt.Errorf("%w: %w", ErrInvalidObject, err)
		}
		return err
	}
	content := job.stream
	if content == nil && job.size > 0 {
		content = bytes.NewReader(job.data)
	}
	sum, err := w.stage.WriteContent(w.ctx, job.meta, job.size, content)
	if errors.Is(err, ostree.ErrInvalidContent) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrInvalidObject, err)
	}
	if err != nil {
		return err
	}
	if sum != job.checksum {
		return fmt.Errorf("%w: content has checksum %s", ErrObjectChecksum, sum)
	}
	return nil
}

// queue hands a job to the writer. A streamed one is waited for, since
// its content is read from the tar stream the caller goes on reading, and
// so is one over queuedObjectSize, which bounds the memory queued. It
// reports the writer's first error, if it has failed by now.
func (w *stageWriter) queue(job *writeJob) error {
	if job.stream != nil || len(job.data) > queuedObjectSize {
		job.written = make(chan struct{})
	}
	if w.failed.Load() {
		return w.wait()
	}
	w.jobs <- job
	if job.written != nil {
		<-job.written
	}
	if w.failed.Load() {
		return w.wait()
	}
	return nil
}

// wait stops the writer once it has written what is queued and returns
// its first error. The caller may use the Stage again afterwards.
func (w *stageWriter) wait() error {
	select {
	case <-w.done:
	default:
		close(w.jobs)
		<-w.done
	}
	return w.err
}
