package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestWireCounter checks that the relay counts HTTP connections and their
// bytes apart from TLS probes, which a plain-HTTP server answers at once
// with an HTTP error (the answer must not make a probe look like HTTP).
func TestWireCounter(t *testing.T) {
	body := []byte("hello, registry")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer srv.Close()
	w, err := startWireCounter(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()

	const probes, gets = 20, 3
	for range probes {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		if res, err := (&http.Client{Transport: tr}).Get("https://" + w.host() + "/v2/"); err == nil {
			res.Body.Close()
			t.Fatal("an HTTPS request to a plain-HTTP server succeeded")
		}
		tr.CloseIdleConnections()
	}
	for range gets {
		tr := &http.Transport{}
		res, err := (&http.Client{Transport: tr}).Get("http://" + w.host() + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(got) != string(body) {
			t.Fatalf("GET through the relay: %q, %v", got, err)
		}
		tr.CloseIdleConnections()
	}
	s, err := w.stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.TLSProbes != probes || s.Conns != gets {
		t.Errorf("counted %d TLS probes and %d HTTP connections, want %d and %d", s.TLSProbes, s.Conns, probes, gets)
	}
	if s.Down < gets*int64(len(body)) || s.Up == 0 || s.ProbeUp == 0 {
		t.Errorf("bytes: %+v, want at least %d down", s, gets*len(body))
	}
	if err := w.reset(); err != nil {
		t.Fatal(err)
	}
	if s, _ := w.stats(); s != (wireStats{}) {
		t.Errorf("after reset: %+v", s)
	}
}
