package updatecachetest

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestTokenIssuer checks the grants and the signature of issued tokens;
// the real registry accepting them is tested in internal/registry.
func TestTokenIssuer(t *testing.T) {
	ti, err := NewTokenIssuer("registry.test", "issuer.test")
	if err != nil {
		t.Fatal(err)
	}
	ti.AddUser("u", "p")
	ti.AddIdentityToken("refresh", "u")
	block, _ := pem.Decode(ti.RootCertBundle())
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	scope := "scope=" + url.QueryEscape("repository:os/x:pull,push")
	for _, tc := range []struct {
		name    string
		req     *http.Request
		status  int
		sub     string
		actions []string
	}{
		{"anonymous gets pull only", httptest.NewRequest("GET", "/token?service=registry.test&"+scope, nil), 200, "", []string{"pull"}},
		{"a user gets what it asks", withBasic(httptest.NewRequest("GET", "/token?"+scope, nil), "u", "p"), 200, "u", []string{"pull", "push"}},
		{"wrong password", withBasic(httptest.NewRequest("GET", "/token?"+scope, nil), "u", "x"), 401, "", nil},
		{"identity token", form(httptest.NewRequest("POST", "/token", strings.NewReader("grant_type=refresh_token&refresh_token=refresh&"+scope))), 200, "u", []string{"pull", "push"}},
		{"unknown identity token", form(httptest.NewRequest("POST", "/token", strings.NewReader("grant_type=refresh_token&refresh_token=other&"+scope))), 401, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			ti.ServeHTTP(w, tc.req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status != 200 {
				return
			}
			var res struct{ Token string }
			if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(res.Token, ".")
			if len(parts) != 3 {
				t.Fatalf("token %q is not a JWS", res.Token)
			}
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
			pub := cert.PublicKey.(*ecdsa.PublicKey)
			if len(sig) != 64 || !ecdsa.Verify(pub, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
				t.Fatal("signature does not verify with the root certificate")
			}
			claimsJSON, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims struct {
				Iss, Sub, Aud string
				Access        []access
			}
			if err := json.Unmarshal(claimsJSON, &claims); err != nil {
				t.Fatal(err)
			}
			if claims.Iss != "issuer.test" || claims.Aud != "registry.test" || claims.Sub != tc.sub ||
				len(claims.Access) != 1 || claims.Access[0].Name != "os/x" || !slices.Equal(claims.Access[0].Actions, tc.actions) {
				t.Errorf("claims %+v, want sub %q with %v on os/x", claims, tc.sub, tc.actions)
			}
		})
	}
}

func withBasic(r *http.Request, user, password string) *http.Request {
	r.SetBasicAuth(user, password)
	return r
}

func form(r *http.Request) *http.Request {
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}
