package updatecachetest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"
)

// A Fault makes a Registry misbehave for the requests it matches. The
// matching fields are ANDed; zero values match anything. A request gets the
// first matching fault, in the order they were added.
//
// Actions: Delay is applied first. A non-zero Status answers without asking
// the registry behind (with Header and Body). Otherwise the registry's answer
// is altered: Header values replace the registry's, Digest replaces
// Docker-Content-Digest, ReplaceBody replaces the body, Pad appends bytes,
// Corrupt changes a byte, and Truncate sends only the first half of the body
// while still declaring its full length.
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

// serve answers req according to f, asking backend unless f.Status is set.
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
	if req.Method != http.MethodHead {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	if f.Truncate {
		// The server closes the connection after the short body, so the
		// client sees an unexpected EOF as after a dropped connection.
		body = body[:len(body)/2]
	}
	w.WriteHeader(res.StatusCode)
	w.Write(body)
}

func (f *Fault) altersResponse() bool {
	return f.Header != nil || f.Digest != "" || f.ReplaceBody != nil || f.Pad > 0 || f.Corrupt || f.Truncate
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append([]string(nil), v...)
	}
}
