package registry

import (
	"errors"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseChallenge(t *testing.T) {
	for _, tc := range []struct {
		in     string
		scheme string
		params map[string]string
	}{
		{`Bearer realm="https://auth.example/token",service="registry.example",scope="repository:os:pull"`, "bearer",
			map[string]string{"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:os:pull"}},
		{`Basic realm="Registry Realm"`, "basic", map[string]string{"realm": "Registry Realm"}},
		{`BEARER Realm="https://a/t" , Service = s`, "bearer", map[string]string{"realm": "https://a/t", "service": "s"}},
		{`Bearer realm="a \"quoted\" realm", error="insufficient_scope"`, "bearer",
			map[string]string{"realm": `a "quoted" realm`, "error": "insufficient_scope"}},
		{`Bearer realm="unterminated`, "bearer", map[string]string{"realm": "unterminated"}},
		{`Negotiate`, "negotiate", map[string]string{}},
		{`Bearer realm`, "bearer", map[string]string{}},
	} {
		c, ok := parseChallenge(tc.in)
		if !ok || c.scheme != tc.scheme || !maps.Equal(c.params, tc.params) {
			t.Errorf("%q: got %v %q %v, want %q %v", tc.in, ok, c.scheme, c.params, tc.scheme, tc.params)
		}
	}
	for _, bad := range []string{"", "  ", `"quoted"`, "=x"} {
		if c, ok := parseChallenge(bad); ok {
			t.Errorf("%q parsed as %v", bad, c)
		}
	}
	h := http.Header{"Www-Authenticate": {`Basic realm="r"`, `Bearer realm="https://a/t"`}}
	if cs := parseChallenges(h); len(cs) != 2 || cs[0].scheme != "basic" || cs[1].scheme != "bearer" {
		t.Errorf("parseChallenges: %v", cs)
	}
}

// TestReadCapped: a declared length over the cap is refused without
// reading; an undeclared or understated one is read no further than one
// byte past the cap.
func TestReadCapped(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		declared int64
		want     error
		maxRead  int64
	}{
		{"fits", "12345678", 8, nil, 8},
		{"fits, undeclared", "12345678", -1, nil, 8},
		{"declared over the cap", strings.Repeat("x", 100), 100, ErrTooLarge, 0},
		{"undeclared over the cap", strings.Repeat("x", 100), -1, ErrTooLarge, 9},
		{"understated", strings.Repeat("x", 100), 4, ErrTooLarge, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &countingReader{r: strings.NewReader(tc.body)}
			data, err := readCapped(r, tc.declared, 8, "manifest")
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %q, %v; want %v", data, err, tc.want)
			}
			if tc.want == nil && string(data) != tc.body {
				t.Errorf("read %q, want %q", data, tc.body)
			}
			if r.n > tc.maxRead {
				t.Errorf("read %d bytes, at most %d expected", r.n, tc.maxRead)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	res := func(v string) *http.Response { return &http.Response{Header: http.Header{"Retry-After": {v}}} }
	if got := retryAfter(res("7"), time.Second); got != 7*time.Second {
		t.Errorf("seconds: %v", got)
	}
	if got := retryAfter(res(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)), time.Second); got < 59*time.Minute {
		t.Errorf("date: %v", got)
	}
	for _, v := range []string{"", "soon", "-3", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)} {
		if got := retryAfter(res(v), 3*time.Second); got != 3*time.Second {
			t.Errorf("%q: %v, want the fallback", v, got)
		}
	}
}

// FuzzParseChallenge: any WWW-Authenticate value parses without panicking
// into a lower-case scheme and parameter names.
func FuzzParseChallenge(f *testing.F) {
	for _, s := range []string{`Bearer realm="https://a/t",service="s",scope="repository:x:pull"`, `Basic realm="r"`,
		`Bearer realm="a \"b\"`, `x=y`, `,,,`, `Bearer a=,b="",=c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := parseChallenge(s)
		if !ok {
			return
		}
		if c.scheme == "" || c.scheme != strings.ToLower(c.scheme) {
			t.Errorf("%q: scheme %q", s, c.scheme)
		}
		for k := range c.params {
			if k == "" || k != strings.ToLower(k) {
				t.Errorf("%q: parameter %q", s, k)
			}
		}
	})
}
