package updatecachetest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// TokenIssuer is a bearer-token server for registries that use the
// distribution token authentication, as Docker Hub, quay.io and ghcr.io
// do: docker-registry configured with `auth: token` (realm: the issuer's
// URL; service, issuer and rootcertbundle from the issuer's methods)
// sends clients to the issuer's realm, and accepts the JWTs it signs. Anonymous clients get
// pull access to any repository; clients that authenticate (Basic auth on
// the token request, as containers/image sends an auth file's credentials,
// or an OAuth2 refresh-token POST with an identity token) get whatever
// they ask for; wrong credentials get 401. Serve it with NewServer, whose
// counts then include the token requests (KindToken, path /token).
type TokenIssuer struct {
	service, issuer string
	cert            *Certificate

	mu            sync.Mutex
	users         map[string]string // name → password
	refreshTokens map[string]string // identity token → name
}

// TokenLifetime is how long an issued token is valid.
const TokenLifetime = 5 * time.Minute

// NewTokenIssuer returns an issuer of tokens for the registry service
// service, signed as issuer with a new self-signed certificate.
func NewTokenIssuer(service, issuer string) (*TokenIssuer, error) {
	cert, err := NewCertificate()
	if err != nil {
		return nil, err
	}
	return &TokenIssuer{service: service, issuer: issuer, cert: cert,
		users: map[string]string{}, refreshTokens: map[string]string{}}, nil
}

// Service returns the registry service name (the tokens' audience).
func (ti *TokenIssuer) Service() string { return ti.service }

// Issuer returns the issuer name the tokens carry.
func (ti *TokenIssuer) Issuer() string { return ti.issuer }

// RootCertBundle returns the PEM certificate that verifies the tokens.
func (ti *TokenIssuer) RootCertBundle() []byte { return ti.cert.CertPEM }

// AddUser lets name with password have any access.
func (ti *TokenIssuer) AddUser(name, password string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.users[name] = password
}

// AddIdentityToken lets identityToken (an auth file's "identitytoken")
// stand for name in OAuth2 refresh-token requests.
func (ti *TokenIssuer) AddIdentityToken(identityToken, name string) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.refreshTokens[identityToken] = name
}

// ServeHTTP answers token requests: GET ?service=&scope=… with optional
// Basic auth, or POST grant_type=refresh_token.
func (ti *TokenIssuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, ok := ti.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="updatecachetest token issuer"`)
		http.Error(w, `{"details":"invalid credentials"}`, http.StatusUnauthorized)
		return
	}
	var scopes []string
	for _, s := range r.Form["scope"] {
		scopes = append(scopes, strings.Fields(s)...)
	}
	token, err := ti.sign(user, scopes)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"token": token, "access_token": token,
		"expires_in": int(TokenLifetime / time.Second), "issued_at": time.Now().UTC().Format(time.RFC3339),
	})
}

// authenticate returns the user a request speaks for ("" when anonymous)
// and whether its credentials, if any, are right.
func (ti *TokenIssuer) authenticate(r *http.Request) (string, bool) {
	if err := r.ParseForm(); err != nil {
		return "", false
	}
	ti.mu.Lock()
	defer ti.mu.Unlock()
	if r.Method == http.MethodPost {
		user, ok := ti.refreshTokens[r.PostForm.Get("refresh_token")]
		return user, ok && r.PostForm.Get("grant_type") == "refresh_token"
	}
	name, password, hasAuth := r.BasicAuth()
	if !hasAuth {
		return "", true
	}
	want, known := ti.users[name]
	return name, known && want == password
}

// access is a claim of a token: actions on one resource.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// sign makes a JWT granting user (anonymous: "") the scopes asked for
// ("repository:NAME:ACTIONS"), pull only when anonymous.
func (ti *TokenIssuer) sign(user string, scopes []string) (string, error) {
	grants := []access{}
	for _, s := range scopes {
		i, j := strings.IndexByte(s, ':'), strings.LastIndexByte(s, ':')
		if i < 0 || i == j {
			continue
		}
		actions := strings.Split(s[j+1:], ",")
		if user == "" {
			actions = slices.DeleteFunc(actions, func(a string) bool { return a != "pull" })
		}
		grants = append(grants, access{Type: s[:i], Name: s[i+1 : j], Actions: actions})
	}
	jti, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return "", err
	}
	now := time.Now()
	header := map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ti.cert.der)}}
	claims := map[string]any{
		"iss": ti.issuer, "sub": user, "aud": ti.service, "jti": jti.String(),
		"iat": now.Unix(), "nbf": now.Add(-time.Second).Unix(), "exp": now.Add(TokenLifetime).Unix(),
		"access": grants,
	}
	var parts []string
	for _, v := range []any{header, claims} {
		b, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		parts = append(parts, base64.RawURLEncoding.EncodeToString(b))
	}
	signed := strings.Join(parts, ".")
	sum := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, ti.cert.key, sum[:])
	if err != nil {
		return "", fmt.Errorf("updatecachetest: signing a token: %w", err)
	}
	// JWS ES256: r and s as two 32-byte big-endian integers.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
