package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// signalCause is the cause of a context cancelled by a signal.
type signalCause struct{ syscall.Signal }

func (s signalCause) Error() string { return unix.SignalName(s.Signal) }

// cancelOnSignals returns a context cancelled, with a signalCause, by the
// first SIGINT or SIGTERM. That signal is then handled no more, so a second
// one ends the process at once, as users expect of a second Ctrl-C. stop
// releases the handler.
func cancelOnSignals(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-signals:
			signal.Stop(signals)
			cancel(signalCause{sig.(syscall.Signal)})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		close(done)
		cancel(nil)
	}
}
