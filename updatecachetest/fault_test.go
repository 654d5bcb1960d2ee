package updatecachetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// pushedRegistry starts a registry holding testSpec's image as os:stable.
func pushedRegistry(t *testing.T) (*Registry, *Image) {
	t.Helper()
	reg := NewRegistry(t)
	img, err := NewImage(testSpec(OCI, Gzip))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Push(context.Background(), "os", "stable", img); err != nil {
		t.Fatal(err)
	}
	return reg, img
}

func TestFaultRedirect(t *testing.T) {
	reg, img := pushedRegistry(t)
	mirror, _ := pushedRegistry(t)
	configPath := "/v2/os/blobs/" + img.ConfigDigest().String()

	t.Run("to another host", func(t *testing.T) {
		defer reg.ClearFaults()
		reg.AddFault(Fault{Kind: KindBlob, Redirect: mirror.URL()})
		reg.Reset()
		mirror.Reset()
		status, _, body, err := get(t, http.MethodGet, "http://"+reg.Host()+configPath+"?x=1")
		if err != nil || status != 200 || !bytes.Equal(body, img.Config.Data) {
			t.Errorf("%d %q %v", status, body, err)
		}
		if n := reg.Counts().Path(http.MethodGet, configPath); n != 1 {
			t.Errorf("registry saw %d GETs, want 1", n)
		}
		if n := mirror.Counts().BlobGETs(img.ConfigDigest()); n != 1 {
			t.Errorf("mirror saw %d GETs, want 1", n)
		}
	})

	t.Run("to itself loops", func(t *testing.T) {
		defer reg.ClearFaults()
		reg.AddFault(Fault{Kind: KindBlob, Redirect: reg.URL()})
		reg.Reset()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr}).Get("http://" + reg.Host() + configPath)
		if err == nil {
			res.Body.Close()
			t.Fatalf("got %s, want the client to give up", res.Status)
		}
		if !strings.Contains(err.Error(), "redirects") {
			t.Errorf("error %v does not name the redirects", err)
		}
		// Go's client follows 10 redirects.
		if n := reg.Counts().BlobGETs(img.ConfigDigest()); n != 10 {
			t.Errorf("registry saw %d GETs, want 10", n)
		}
	})
}

// TestFaultUnderstate reads the response off the wire: Content-Length
// declares fewer bytes than follow it.
func TestFaultUnderstate(t *testing.T) {
	reg, img := pushedRegistry(t)
	reg.AddFault(Fault{Kind: KindBlob, Understate: 5})
	conn, err := net.Dial("tcp", reg.Host())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Host()+"/v2/os/blobs/"+img.ConfigDigest().String(), nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	res, err := http.ReadResponse(r, req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	data := img.Config.Data
	if err != nil || res.StatusCode != 200 || res.ContentLength != int64(len(data)-5) || !bytes.Equal(body, data[:len(data)-5]) {
		t.Fatalf("%s, Content-Length %d, %q, %v", res.Status, res.ContentLength, body, err)
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, data[len(data)-5:]) {
		t.Errorf("after the declared body: %q, %v; want the rest of the blob", rest, err)
	}
}

func TestFaultThrottle(t *testing.T) {
	reg, img := pushedRegistry(t)
	url := "http://" + reg.Host() + "/v2/os/blobs/" + img.ConfigDigest().String()
	size := len(img.Config.Data)
	// Half a second for the whole body: 5 chunks, 100 ms apart.
	reg.AddFault(Fault{Kind: KindBlob, Throttle: 2 * size})

	t.Run("arrives whole at the rate", func(t *testing.T) {
		start := time.Now()
		status, _, body, err := get(t, http.MethodGet, url)
		elapsed := time.Since(start)
		if err != nil || status != 200 || !bytes.Equal(body, img.Config.Data) {
			t.Fatalf("%d %q %v", status, body, err)
		}
		if elapsed < 400*time.Millisecond || elapsed > 2*time.Second {
			t.Errorf("%d bytes took %v, want about half a second", size, elapsed)
		}
	})

	t.Run("headers at once, body until the client gives up", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		start := time.Now()
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatalf("headers: %v", err)
		}
		defer res.Body.Close()
		if res.ContentLength != int64(size) {
			t.Errorf("Content-Length %d, want %d", res.ContentLength, size)
		}
		body, err := io.ReadAll(res.Body)
		if !errors.Is(err, context.DeadlineExceeded) || len(body) == 0 || len(body) >= size || time.Since(start) > 2*time.Second {
			t.Errorf("%d of %d bytes, %v, after %v", len(body), size, err, time.Since(start))
		}
	})
}
