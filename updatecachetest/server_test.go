package updatecachetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKindOf(t *testing.T) {
	for path, want := range map[string]Kind{
		"/v2/":                               KindPing,
		"/v2":                                KindPing,
		"/v2/os/manifests/stable":            KindManifest,
		"/v2/org/os/manifests/sha256:abc":    KindManifest,
		"/v2/os/blobs/sha256:abc":            KindBlob,
		"/v2/os/blobs/uploads/":              KindUpload,
		"/v2/os/blobs/uploads/3f2a?_state=x": KindUpload,
		"/token":                             KindToken,
		"/v2/token":                          KindToken,
		"/v2/os/tags/list":                   KindOther,
		"/v2/_catalog":                       KindOther,
		"/healthz":                           KindOther,
		"/v2/manifests/x":                    KindOther, // no repository name
		"/v2/os/manifests":                   KindOther,
	} {
		if got := KindOf(path); got != want {
			t.Errorf("KindOf(%q) = %s, want %s", path, got, want)
		}
	}
}

// get sends one request with a plain client and returns status, headers
// and as much body as arrived, with the read error.
func get(t *testing.T, method, url string) (int, http.Header, []byte, error) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", manifestTypes)
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, body, err
}

func TestCountsAndFaults(t *testing.T) {
	reg := NewRegistry(t)
	img, err := NewImage(testSpec(OCI, Gzip))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := reg.Push(ctx, "os", "stable", img); err != nil {
		t.Fatal(err)
	}
	pushed := reg.Counts()
	if pushed.Upload != 2*3 || pushed.BlobHEAD != 3 || pushed.ManifestPUT != 2 {
		t.Errorf("push: want per blob a HEAD, a POST and a PUT, then the manifest by digest and by tag; %v", pushed)
	}
	// Pushing again finds every blob present.
	reg.Reset()
	if _, err := reg.Push(ctx, "os", "stable", img); err != nil {
		t.Fatal(err)
	}
	if n := reg.Counts(); n.Upload != 0 || n.BlobHEAD != 3 {
		t.Errorf("second push uploaded again: %v", n)
	}

	base := "http://" + reg.Host()
	manifestURL := base + "/v2/os/manifests/stable"
	configURL := base + "/v2/os/blobs/" + img.ConfigDigest().String()
	for _, tc := range []struct {
		name   string
		fault  Fault
		method string
		url    string
		check  func(t *testing.T, status int, h http.Header, body []byte, err error)
	}{
		{
			name:  "status with headers and body, no backend",
			fault: Fault{Kind: KindManifest, Status: 429, Header: http.Header{"Retry-After": {"3"}}, Body: ErrorBody("TOOMANYREQUESTS", "slow")},
			url:   manifestURL,
			check: func(t *testing.T, status int, h http.Header, body []byte, err error) {
				if status != 429 || h.Get("Retry-After") != "3" || !bytes.Contains(body, []byte(`"code":"TOOMANYREQUESTS"`)) {
					t.Errorf("%d %v %s", status, h, body)
				}
			},
		},
		{
			name:   "lying digest",
			fault:  Fault{Method: http.MethodHead, Digest: "sha256:" + strings.Repeat("0", 64)},
			method: http.MethodHead,
			url:    manifestURL,
			check: func(t *testing.T, status int, h http.Header, _ []byte, _ error) {
				if status != 200 || h.Get("Docker-Content-Digest") != "sha256:"+strings.Repeat("0", 64) {
					t.Errorf("%d %v", status, h)
				}
			},
		},
		{
			name:  "corrupt keeps length and headers",
			fault: Fault{Path: "/manifests/", Corrupt: true},
			url:   manifestURL,
			check: func(t *testing.T, status int, h http.Header, body []byte, err error) {
				if err != nil || status != 200 || len(body) != len(img.Manifest) || bytes.Equal(body, img.Manifest) ||
					h.Get("Docker-Content-Digest") != img.ManifestDigest.String() {
					t.Errorf("%d %v %d bytes, %v", status, h, len(body), err)
				}
			},
		},
		{
			name:  "truncate",
			fault: Fault{Kind: KindBlob, Truncate: true},
			url:   configURL,
			check: func(t *testing.T, status int, _ http.Header, body []byte, err error) {
				if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != len(img.Config.Data)/2 {
					t.Errorf("%d, %d bytes, %v", status, len(body), err)
				}
			},
		},
		{
			name:  "pad",
			fault: Fault{Kind: KindBlob, Pad: 10},
			url:   configURL,
			check: func(t *testing.T, _ int, _ http.Header, body []byte, err error) {
				if err != nil || !bytes.Equal(body, append(bytes.Clone(img.Config.Data), "          "...)) {
					t.Errorf("%q, %v", body, err)
				}
			},
		},
		{
			name:  "replace body and content type",
			fault: Fault{Kind: KindManifest, ReplaceBody: []byte("{}"), Header: http.Header{"Content-Type": {"text/plain"}}},
			url:   manifestURL,
			check: func(t *testing.T, status int, h http.Header, body []byte, err error) {
				if err != nil || status != 200 || string(body) != "{}" || h.Get("Content-Type") != "text/plain" {
					t.Errorf("%d %v %q %v", status, h, body, err)
				}
			},
		},
		{
			name:  "unmatched path passes through",
			fault: Fault{Path: "/other-repo/", Status: 500},
			url:   manifestURL,
			check: func(t *testing.T, status int, _ http.Header, body []byte, _ error) {
				if status != 200 || !bytes.Equal(body, img.Manifest) {
					t.Errorf("%d %s", status, body)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer reg.ClearFaults()
			reg.AddFault(tc.fault)
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			status, h, body, err := get(t, method, tc.url)
			tc.check(t, status, h, body, err)
		})
	}

	t.Run("times, order and counts", func(t *testing.T) {
		defer reg.ClearFaults()
		reg.Reset()
		reg.AddFault(Fault{Kind: KindManifest, Times: 2, Status: 503})
		reg.AddFault(Fault{Kind: KindManifest, Times: 1, Status: 502})
		var statuses []int
		for range 4 {
			status, _, _, _ := get(t, http.MethodGet, manifestURL)
			statuses = append(statuses, status)
		}
		if want := []int{503, 503, 502, 200}; !slices.Equal(statuses, want) {
			t.Errorf("statuses %v, want %v", statuses, want)
		}
		get(t, http.MethodGet, configURL)
		get(t, http.MethodGet, base+"/v2/")
		n := reg.Counts()
		if n.ManifestGET != 4 || n.BlobGET != 1 || n.BlobGETs(img.ConfigDigest()) != 1 || n.BlobGETs(img.Layers[0].Digest) != 0 ||
			n.Ping != 1 || n.Total != 6 || n.Path(http.MethodGet, "/v2/os/manifests/stable") != 4 || len(n.Log) != 6 {
			t.Errorf("counts %v", n)
		}
	})

	t.Run("delay gives up with the client", func(t *testing.T) {
		defer reg.ClearFaults()
		reg.AddFault(Fault{Kind: KindManifest, Delay: time.Minute})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, manifestURL, nil)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		start := time.Now()
		_, err := (&http.Client{Transport: tr}).Do(req)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Errorf("%v after %v", err, time.Since(start))
		}
	})
}

func TestDeleteManifestAndStop(t *testing.T) {
	reg := NewRegistry(t)
	img, err := NewImage(testSpec(OCI, Gzip))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tag := range []string{"stable", "41"} {
		if _, err := reg.Push(ctx, "os", tag, img); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.DeleteManifest(ctx, "os", img.ManifestDigest); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"stable", "41", img.ManifestDigest.String()} {
		if status, _, _, _ := get(t, http.MethodHead, "http://"+reg.Host()+"/v2/os/manifests/"+ref); status != http.StatusNotFound {
			t.Errorf("%s after delete: %d", ref, status)
		}
	}
	if got := reg.Ref("os", "stable"); got != "docker://"+reg.Host()+"/os:stable" {
		t.Errorf("Ref = %q", got)
	}
	if got := reg.Ref("os", img.ManifestDigest.String()); got != "docker://"+reg.Host()+"/os@"+img.ManifestDigest.String() {
		t.Errorf("Ref = %q", got)
	}

	reg.Stop()
	if err := reg.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := Push(ctx, reg.Host(), "os", "stable", img, HTTPOptions{}); err == nil {
		t.Error("push to a stopped registry succeeded")
	}
}

func TestRestartKeepsAddressAndContent(t *testing.T) {
	r := NewRegistry(t)
	img, err := NewImage(ImageSpec{Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.Push(ctx, "os", "v1", img); err != nil {
		t.Fatal(err)
	}
	manifestURL := r.URL().String() + "/v2/os/manifests/v1"
	r.Stop()
	if res, err := http.Head(manifestURL); err == nil {
		res.Body.Close()
		t.Fatal("a closed registry answered")
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	res, err := http.Head(manifestURL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Docker-Content-Digest") != img.ManifestDigest.String() {
		t.Fatalf("after restart: %s %q", res.Status, res.Header.Get("Docker-Content-Digest"))
	}
}
