package updatecachetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A Fault makes a Registry misbehave for the requests it matches. The
// matching fields are ANDed; zero values match anything. A request gets the
// first matching fault, in the order they were added.
//
// Actions: Delay is applied first. A non-nil Redirect, or else a non-zero
// Status, answers without asking the registry behind. Otherwise the
// registry's answer is altered: Header values replace the registry's (a
// wrong Content-Type, say), Digest replaces Docker-Content-Digest,
// ReplaceBody replaces the body, Pad appends bytes, Corrupt changes a byte,
// Truncate sends only the first half of the body while still declaring its
// full length, Understate declares less than it sends, and Throttle sends
// the body slowly.
type Fault struct {
	Method string // e.g. http.MethodGet; "" matches any
	Kind   Kind   // "" matches any
	Path   string // substring of the URL path; "" matches any
	Times  int    // match only the first Times requests; 0 means every one

	Delay  time.Duration // waits (or until the client gives up)
	Status int           // answer with this status and Header/Body, without the backend
	Header http.Header   // set on the response
	Body   []byte        // body of a Status answer, e.g. ErrorBody(…)

	Digest      string // lying Docker-Content-Digest
	ReplaceBody []byte // replacement body; Content-Length follows it
	Pad         int    // append this many spaces (still valid JSON, oversized)
	Corrupt     bool   // change one byte; headers, length included, unchanged
	Truncate    bool   // send half the body, declare the full length

	// Redirect answers 307 Temporary Redirect to the same path and query on
	// this base URL: another server's (Registry.URL of a second registry is
	// "another host") or this one's, which makes a redirect loop.
	Redirect *url.URL
	// Understate sends the whole body but declares a Content-Length this
	// many bytes shorter, so the extra bytes follow the response on the
	// connection as a broken server would send them.
	Understate int
	// Throttle sends the body at this many bytes per second, in chunks of
	// a tenth of that (at least a byte), giving up when the client does.
	Throttle int
}

// ErrorBody returns a registry error body as the distribution spec defines
// it, e.g. ErrorBody("MANIFEST_UNKNOWN", "manifest unknown").
func ErrorBody(code, message string) []byte {
	type entry struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Errors []entry `json:"errors"`
	}{[]entry{{code, message}}})
	return b
}

// faultState tracks how many more requests a Fault applies to.
type faultState struct {
	Fault
	left int // < 0: unlimited
}

// AddFault adds f after the faults already set.
func (r *Registry) AddFault(f Fault) {
	left := f.Times
	if left == 0 {
		left = -1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, &faultState{Fault: f, left: left})
}

// ClearFaults removes every fault.
func (r *Registry) ClearFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = nil
}

// matchFault returns the fault for req and uses up one of its Times, or nil.
// r.mu must be held.
func (r *Registry) matchFault(req *http.Request, kind Kind) *Fault {
	for _, f := range r.faults {
		if f.left == 0 ||
			(f.Method != "" && f.Method != req.Method) ||
			(f.Kind != "" && f.Kind != kind) ||
			!strings.Contains(req.URL.Path, f.Path) {
			continue
		}
		if f.left > 0 {
			f.left--
		}
		fault := f.Fault
		return &fault
	}
	return nil
}

// serve answers req according to f, asking backend unless f.Redirect or
// f.Status is set.
func (f *Fault) serve(w http.ResponseWriter, req *http.Request, backend http.Handler) {
	if f.Delay > 0 {
		timer := time.NewTimer(f.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-req.Context().Done():
			return
		}
	}
	if f.Redirect != nil {
		to := *f.Redirect
		to.Path, to.RawPath, to.RawQuery = req.URL.Path, req.URL.RawPath, req.URL.RawQuery
		http.Redirect(w, req, to.String(), http.StatusTemporaryRedirect)
		return
	}
	if f.Status != 0 {
		copyHeader(w.Header(), f.Header)
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Body)))
		w.WriteHeader(f.Status)
		w.Write(f.Body)
		return
	}
	if !f.altersResponse() {
		backend.ServeHTTP(w, req)
		return
	}
	rec := httptest.NewRecorder()
	backend.ServeHTTP(rec, req)
	res := rec.Result()
	copyHeader(w.Header(), res.Header)
	copyHeader(w.Header(), f.Header)
	if f.Digest != "" {
		w.Header().Set("Docker-Content-Digest", f.Digest)
	}
	body := rec.Body.Bytes()
	if f.ReplaceBody != nil {
		body = f.ReplaceBody
	}
	if f.Pad > 0 {
		body = append(bytes.Clone(body), bytes.Repeat([]byte(" "), f.Pad)...)
	}
	if f.Corrupt && len(body) > 0 {
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0x01
	}
	declared := len(body)
	if f.Understate > 0 {
		declared = max(0, declared-f.Understate)
	}
	if req.Method != http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(declared))
	} else {
		body = nil
	}
	if f.Truncate {
		// The server closes the connection after the short body, so the
		// client sees an unexpected EOF as after a dropped connection.
		body = body[:len(body)/2]
	}
	switch {
	case f.Understate > 0:
		// net/http refuses to write past Content-Length, so the response
		// is written on the raw connection.
		writeRaw(w, res.StatusCode, body)
	case f.Throttle > 0:
		writeSlowly(w, req, res.StatusCode, body, f.Throttle)
	default:
		w.WriteHeader(res.StatusCode)
		w.Write(body)
	}
}

// writeRaw writes the response (status, w's headers, body) itself on the
// hijacked connection, whatever Content-Length says, and closes it.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Only HTTP/1 connections can be hijacked, and this server speaks
		// nothing else; answer something a client cannot mistake for data.
		http.Error(w, "updatecachetest: cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	w.Header().Write(buf)
	buf.WriteString("\r\n")
	buf.Write(body)
	buf.Flush()
}

// writeSlowly sends the status and headers at once, then body at rate bytes
// per second, until it is sent or the client goes away.
func writeSlowly(w http.ResponseWriter, req *http.Request, status int, body []byte, rate int) {
	rc := http.NewResponseController(w)
	w.WriteHeader(status)
	rc.Flush()
	chunk := max(1, rate/10)
	tick := time.NewTicker(time.Duration(chunk) * time.Second / time.Duration(rate))
	defer tick.Stop()
	for len(body) > 0 {
		select {
		case <-tick.C:
		case <-req.Context().Done():
			return
		}
		n := min(chunk, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		rc.Flush()
		body = body[n:]
	}
}

func (f *Fault) altersResponse() bool {
	return f.Header != nil || f.Digest != "" || f.ReplaceBody != nil || f.Pad > 0 || f.Corrupt || f.Truncate ||
		f.Understate > 0 || f.Throttle > 0
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
}
