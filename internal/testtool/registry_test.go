package testtool

import (
	"net/http"
	"testing"
)

func TestStartRegistry(t *testing.T) {
	host, stop := StartRegistry(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	res, err := client.Get("http://" + host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/: %s, API version %q", res.Status, res.Header.Get("Docker-Distribution-Api-Version"))
	}

	stop()
	stop() // idempotent, and the cleanup calls it again
	tr.CloseIdleConnections()
	if res, err := client.Get("http://" + host + "/v2/"); err == nil {
		res.Body.Close()
		t.Fatalf("registry still answers after stop: %s", res.Status)
	}
}
