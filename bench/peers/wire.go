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
// the relay sits in front of it.
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
	active int // connections being relayed
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

// relay copies both ways until both sides are done, then adds the
// connection's bytes to the totals.
func (w *wireCounter) relay(client net.Conn) {
	var down, up int64
	var probe bool
	defer func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.active--
		if probe {
			w.totals.TLSProbes++
			w.totals.ProbeDown += down
			w.totals.ProbeUp += up
		} else if down+up > 0 {
			w.totals.Conns++
			w.totals.Down += down
			w.totals.Up += up
		}
	}()
	defer client.Close()
	server, err := net.Dial("tcp", w.target)
	if err != nil {
		return
	}
	defer server.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// 0x16 opens a TLS handshake record; an HTTP request starts with
		// a letter. The first byte goes up before any comes down.
		io.Copy(&countingWriter{w: server, n: &up, first: func(b byte) { probe = b == 0x16 }}, client)
		closeWrite(server)
	}()
	io.Copy(&countingWriter{w: client, n: &down}, server)
	closeWrite(client)
	<-done
}

// closeWrite passes an end of stream on while the other direction may
// still be carrying data.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// countingWriter counts what it writes; first, if set, sees the first byte.
type countingWriter struct {
	w     io.Writer
	n     *int64
	first func(byte)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.first != nil && len(p) > 0 {
		c.first(p[0])
		c.first = nil
	}
	n, err := c.w.Write(p)
	*c.n += int64(n)
	return n, err
}

// settle waits until no connection is being relayed: a client that has
// exited may have closed its connections a moment before the relay
// finished with them.
func (w *wireCounter) settle() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		active := w.active
		w.mu.Unlock()
		if active == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections still open at the relay", active)
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
