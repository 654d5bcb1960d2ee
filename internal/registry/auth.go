package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// challenge is one WWW-Authenticate challenge: a scheme (lower case) and
// its parameters (names lower case).
type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenges reads the challenges of a response's WWW-Authenticate
// headers, one per header line as containers/image reads them.
func parseChallenges(h http.Header) []challenge {
	var out []challenge
	for _, line := range h.Values("WWW-Authenticate") {
		if c, ok := parseChallenge(line); ok {
			out = append(out, c)
		}
	}
	return out
}

// parseChallenge parses `Scheme name=value, name="quoted \" value", …`
// (RFC 7235 auth-params; a token68 is ignored).
func parseChallenge(s string) (challenge, bool) {
	scheme, rest := cutToken(strings.TrimLeft(s, " \t"))
	if scheme == "" {
		return challenge{}, false
	}
	c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
	for {
		rest = strings.TrimLeft(rest, " \t,")
		var name string
		if name, rest = cutToken(rest); name == "" {
			return c, true
		}
		rest = strings.TrimLeft(rest, " \t")
		if !strings.HasPrefix(rest, "=") {
			return c, true
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		var value string
		if strings.HasPrefix(rest, `"`) {
			value, rest = cutQuoted(rest[1:])
		} else {
			value, rest = cutToken(rest)
		}
		c.params[strings.ToLower(name)] = value
	}
}

// cutToken splits off the leading RFC 7230 token of s.
func cutToken(s string) (token, rest string) {
	i := strings.IndexFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune("\"(),/:;<=>?@[]\\{}", r)
	})
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// cutQuoted splits off a quoted string whose opening quote is already
// gone, unescaping quoted pairs; an unterminated string runs to the end.
func cutQuoted(s string) (value, rest string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:]
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), ""
}

// Token requests follow containers/image: the scope asks for pull only,
// a token lives at least this long, and the answer is capped.
const (
	minTokenLifetime = 60 * time.Second
	maxTokenBody     = 1 << 20
)

// bearerToken is a token obtained in this session.
type bearerToken struct {
	token   string
	expires time.Time
}

// authorize sets req's Authorization from the registry's challenges, as
// containers/image does: the first challenge it supports decides; basic
// sends the credentials, bearer a token for pulling e.ref's repository
// (fetched once per session and repository), anything else nothing.
func (e *endpoint) authorize(ctx context.Context, req *http.Request) error {
	for _, ch := range e.host.challenges {
		switch ch.scheme {
		case "basic":
			if e.auth.Username != "" || e.auth.Password != "" {
				req.SetBasicAuth(e.auth.Username, e.auth.Password)
			}
			return nil
		case "bearer":
			token, err := e.bearer(ctx, ch)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			return nil
		}
	}
	return nil
}

// bearer returns a token for e's repository, asking the challenge's realm
// unless this session already holds a live one.
func (e *endpoint) bearer(ctx context.Context, ch challenge) (string, error) {
	if e.registryToken != "" {
		return e.registryToken, nil
	}
	scope := "repository:" + e.path() + ":pull"
	key := scope + "\x00" + e.auth.Username
	if t, ok := e.host.tokens[key]; ok && time.Now().Before(t.expires) {
		return t.token, nil
	}
	realm, err := url.Parse(ch.params["realm"])
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") || realm.Host == "" {
		return "", wrapf(ErrMalformed, err, "bearer challenge of %s: realm %q", e.host.name, ch.params["realm"])
	}
	if e.host.verifiesTLS() && !e.host.plain.allows(realm) {
		return "", refusePlainHTTP(nil, realm)
	}
	req, err := e.tokenRequest(ctx, realm, ch.params["service"], scope)
	if err != nil {
		return "", err
	}
	res, err := e.host.client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("requesting a bearer token from %s: %w", realm.Redacted(), responseError(res))
	}
	t, err := readToken(res.Body)
	if err != nil {
		return "", fmt.Errorf("bearer token from %s: %w", realm.Redacted(), err)
	}
	e.host.tokens[key] = t
	return t.token, nil
}

// tokenRequest builds the token request: with an identity token, an OAuth2
// refresh-token POST; otherwise a GET carrying the credentials as Basic
// auth (the distribution token specification).
func (e *endpoint) tokenRequest(ctx context.Context, realm *url.URL, service, scope string) (*http.Request, error) {
	params := realm.Query()
	if service != "" {
		params.Set("service", service)
	}
	params.Set("scope", scope)
	var req *http.Request
	var err error
	if e.auth.IdentityToken != "" {
		params.Set("grant_type", "refresh_token")
		params.Set("refresh_token", e.auth.IdentityToken)
		params.Set("client_id", "containers/image")
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, realm.String(), strings.NewReader(params.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		if e.auth.Username != "" {
			params.Set("account", e.auth.Username)
		}
		u := *realm
		u.RawQuery = params.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err == nil && e.auth.Username != "" && e.auth.Password != "" {
			req.SetBasicAuth(e.auth.Username, e.auth.Password)
		}
	}
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", e.host.userAgent)
	return req, nil
}

// readToken parses a token response (token or access_token, expires_in,
// issued_at).
func readToken(body io.Reader) (*bearerToken, error) {
	data, err := readCapped(body, -1, maxTokenBody, "token response")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Token       string    `json:"token"`
		AccessToken string    `json:"access_token"`
		ExpiresIn   int       `json:"expires_in"`
		IssuedAt    time.Time `json:"issued_at"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, wrapf(ErrMalformed, err, "token response")
	}
	t := &bearerToken{token: doc.Token}
	if t.token == "" {
		t.token = doc.AccessToken
	}
	if t.token == "" {
		return nil, wrapf(ErrMalformed, nil, "token response holds no token")
	}
	issued := doc.IssuedAt
	if issued.IsZero() {
		issued = time.Now()
	}
	t.expires = issued.Add(max(time.Duration(doc.ExpiresIn)*time.Second, minTokenLifetime))
	return t, nil
}
