package testtool

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/osimage/updatecache/updatecachetest"
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

// TestStartRegistryWith runs docker-registry over HTTPS with htpasswd auth:
// the certificate verifies, anonymous requests get the Basic challenge,
// the user gets in.
func TestStartRegistryWith(t *testing.T) {
	cert, err := updatecachetest.NewCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := StartRegistryWith(t, RegistryConfig{TLSCert: cert.CertPEM, TLSKey: cert.KeyPEM, HTPasswd: map[string]string{"u": "p"}})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(cert.CertPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for _, tc := range []struct {
		user   string
		status int
	}{{"", http.StatusUnauthorized}, {"u", http.StatusOK}} {
		req, err := http.NewRequest(http.MethodGet, "https://"+host+"/v2/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.user != "" {
			req.SetBasicAuth(tc.user, "p")
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status || (tc.user == "" && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ")) {
			t.Errorf("user %q: %s, WWW-Authenticate %q; want %d", tc.user, res.Status, res.Header.Get("WWW-Authenticate"), tc.status)
		}
	}
}
