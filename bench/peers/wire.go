package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// wireCounter is a TCP relay that counts every byte each way between the
// clients and the server behind it: HTTP headers and bodies as a metered
// link sees them. updatecachetest's proxy counts requests, not bytes, so
// the relay sits in front of it. Bytes are counted as they pass, so a
// connection kept open (a pull-through cache's keep-alive connections to
// the origin) is counted too.
//
// containers/image tries HTTPS before plain HTTP on a registry whose TLS is
// not verified, so skopeo and updatecache open one connection that starts
// with a TLS handshake and is refused. Such connections are counted as TLS
// probes, their bytes with the rest.
type wireCounter struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	active int       // connections being relayed
	lastIO time.Time // when a byte last passed
	totals wireStats
}

// wireStats is a snapshot of a wireCounter. Down and Up count the bytes
// of HTTP connections; the TLS probes' bytes are counted apart.
type wireStats struct {
	Down, Up           int64 // bytes from the server, bytes to it
	Conns              int64 // HTTP connections
	TLSProbes          int64
	ProbeDown, ProbeUp int64
}

func startWireCounter(target string) (*wireCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &wireCounter{ln: ln, target: target}
	w.wg.Add(1)
	go w.accept()
	return w, nil
}

func (w *wireCounter) host() string { return w.ln.Addr().String() }

func (w *wireCounter) accept() {
	defer w.wg.Done()
	for {
		c, err := w.ln.Accept()
		if err != nil {
			return
		}
		w.mu.Lock()
		w.active++
		w.mu.Unlock()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.relay(c)
		}()
	}
}

// relay copies both ways until both sides are done.
func (w *wireCounter) relay(client net.Conn) {
	defer func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.active--
	}()
	defer client.Close()
	server, err := net.Dial("tcp", w.target)
	if err != nil {
		return
	}
	defer server.Close()
	var conn relayedConn
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&countingWriter{w: server, before: func(p []byte) { w.classify(&conn, p) }, count: func(n int) { w.add(&conn, n, true) }}, client)
		closeWrite(server)
	}()
	io.Copy(&countingWriter{w: client, count: func(n int) { w.add(&conn, n, false) }}, server)
	closeWrite(client)
	<-done
}

// relayedConn is what the counter knows of one connection: whether its
// first byte has been seen, and whether it is a TLS probe.
type relayedConn struct {
	seen, probe bool
}

// classify counts c as an HTTP connection or a TLS probe from the first
// bytes p it sends up, before they reach the server and so before any
// answer can come down.
func (w *wireCounter) classify(c *relayedConn, p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.seen || len(p) == 0 {
		return
	}
	// 0x16 opens a TLS handshake record; an HTTP request starts with a
	// letter.
	c.seen, c.probe = true, p[0] == 0x16
	if c.probe {
		w.totals.TLSProbes++
	} else {
		w.totals.Conns++
	}
}

// add counts n bytes that went up (to the server) or down on c.
func (w *wireCounter) add(c *relayedConn, n int, up bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastIO = time.Now()
	switch {
	case c.probe && up:
		w.totals.ProbeUp += int64(n)
	case c.probe:
		w.totals.ProbeDown += int64(n)
	case up:
		w.totals.Up += int64(n)
	default:
		w.totals.Down += int64(n)
	}
}

// closeWrite passes an end of stream on while the other direction may
// still be carrying data.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// countingWriter counts what it writes; before, if set, sees every
// buffer before it is written.
type countingWriter struct {
	w      io.Writer
	before func([]byte)
	count  func(int)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.before != nil {
		c.before(p)
	}
	n, err := c.w.Write(p)
	if n > 0 {
		c.count(n)
	}
	return n, err
}

// settle waits until no connection is being relayed, or, where a server
// keeps connections open, until none has carried a byte for quietFor: a
// client that has exited may have closed its connections a moment before
// the relay finished with them.
func (w *wireCounter) settle() error {
	const quietFor = 200 * time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		active, quiet := w.active, time.Since(w.lastIO) >= quietFor
		w.mu.Unlock()
		if active == 0 || quiet {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections still busy at the relay", active)
		}
		time.Sleep(time.Millisecond)
	}
}

// reset zeroes the counters once no connection is open.
func (w *wireCounter) reset() error {
	if err := w.settle(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.totals = wireStats{}
	return nil
}

// stats returns the counts once no connection is open.
func (w *wireCounter) stats() (wireStats, error) {
	if err := w.settle(); err != nil {
		return wireStats{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.totals, nil
}

func (w *wireCounter) close() {
	w.ln.Close()
}
