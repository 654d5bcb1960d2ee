package selinux

import (
	"errors"
	"strings"
	"testing"
)

// compileForTest parses and compiles pattern, failing t on error, and
// returns a matcher that checks that the Go regexp and (when the pattern
// has one) the position automaton agree.
func compileForTest(t testing.TB, pattern string) func(string) bool {
	t.Helper()
	pt, err := parsePattern(pattern)
	if err != nil {
		t.Fatalf("parsePattern(%q): %v", pattern, err)
	}
	re, err := pt.compile(pattern)
	if err != nil {
		t.Fatalf("compile(%q): %v", pattern, err)
	}
	nfa := buildBitNFA(pt)
	return func(path string) bool {
		matched := re.MatchString(matchInput(path))
		if nfa != nil && nfa.match(path) != matched {
			t.Errorf("%q on %q: regexp %v, automaton %v", pattern, path, matched, !matched)
		}
		return matched
	}
}

func TestPatternMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern  string
		match    []string
		nomatch  []string
		prefix   string
		isPrefix bool // the whole pattern is the prefix
	}{
		{`/usr/lib(/.*)?`, []string{"/usr/lib", "/usr/lib/", "/usr/lib/x\ny", "/usr/lib\n"}, []string{"/usr/lib64", "/usr/li", "/usr/lib\n\n"}, "/usr/lib", false},
		{`/etc/passwd`, []string{"/etc/passwd", "/etc/passwd\n"}, []string{"/etc/passwdx", "/etc/passw"}, "/etc/passwd", true},
		{`/etc/host\.conf`, []string{"/etc/host.conf"}, []string{"/etc/hostxconf"}, "/etc/host.conf", true},
		// "." and "[^/]" take one byte, also of a multi-byte character.
		{`/a.b`, []string{"/a\xffb", "/a\nb", "/a/b"}, []string{"/a\xc3\xa9b", "/ab"}, "/a", false},
		{`/a[^/]b`, []string{"/a\x80b"}, []string{"/a\xc3\xa9b", "/a/b"}, "/a", false},
		{`/a..b`, []string{"/a\xc3\xa9b"}, nil, "/a", false},
		// Nothing outside ASCII is a word, digit or space character, and
		// no case folding happens.
		{`/\w+`, []string{"/abc_1"}, []string{"/\xc3\xa9", "/a-b"}, "/", false},
		{`/\s\d\S\D\W`, []string{"/\v1xx\xff"}, []string{"/\xa01xx-"}, "/", false},
		{`/[[:alpha:]][[:^digit:]][[:space:]]`, []string{"/aa\v"}, []string{"/\xe9a ", "/a1 "}, "/", false},
		{`/k`, []string{"/k"}, []string{"/K", "/\u212a"}, "/k", true},
		{`/(bin|sbin)/x`, []string{"/bin/x", "/sbin/x"}, []string{"/bin/y"}, "/", false},
		{`/usr/(bin|bin)`, []string{"/usr/bin"}, nil, "/usr/bin", true},
		{`/x{2,3}`, []string{"/xx", "/xxx"}, []string{"/x", "/xxxx"}, "/x", false},
		{`/x{2}`, []string{"/xx"}, []string{"/x"}, "/x", false},
		{`/x{,2}`, []string{"/x{,2}"}, []string{"/x"}, "/x{,2}", true},
		{`/x{a}`, []string{"/x{a}"}, nil, "/x{a}", true},
		{`/x*?y+?z??`, []string{"/yz", "/xxyy"}, []string{"/x"}, "/", false},
		{`/\x41\x\0\x{42}\o{103}\00012`, []string{"/A\x00\x00BC\x0012"}, nil, "/A\x00\x00BC\x0012", true},
		{`/\Q.*\E+`, []string{"/.*", "/.**"}, []string{"/x"}, "/.*", false},
		{`/[]a]`, []string{"/]", "/a"}, []string{"/b"}, "/", false},
		{`/[^]a]`, []string{"/b"}, []string{"/]", "/a"}, "/", false},
		{`/[a\-z]`, []string{"/-", "/a"}, []string{"/b"}, "/", false},
		{`/[\d-]`, []string{"/1", "/-"}, []string{"/a"}, "/", false},
		{`/[\x80-\xff]`, []string{"/\x80", "/\xff"}, []string{"/\x7f"}, "/", false},
		{`/[\b]`, []string{"/\b"}, []string{"/b"}, "/", false},
		{`/a\b`, []string{"/a"}, nil, "/a", false},
		{`^/a$`, []string{"/a", "/a\n"}, []string{"/ab"}, "/a", true},
		// The anchors libselinux adds bind to the first and the last
		// alternative only.
		{`/a|/b`, []string{"/a", "/b", "/ab", "/x/b", "/b\n"}, []string{"/x", "/bx", "x/a"}, "", false},
		{`/a|`, []string{"/a", "", "/anything"}, nil, "", false},
		{`/a\`, []string{"/a$", "/a$x"}, []string{"/a", "/a\n"}, "/a$", false},
		{`/a\Qb`, []string{"/ab$", "/ab$x"}, []string{"/ab"}, "/ab$", false},
		{`/a\Z`, []string{"/a", "/a\n"}, []string{"/a\n\n"}, "/a", true},
		{`/a$`, []string{"/a", "/a\n"}, []string{"/a\n\n"}, "/a", true},
		{`/a$|/b`, []string{"/a", "/a\n", "/b", "x/b"}, []string{"/ax"}, "", false},
		{`/(?:x)(?<n>y)(?P<m>z)(?'o'w)(?|v)(?#comment)`, []string{"/xyzwv"}, nil, "/xyzwv", true},
		{`/a\z`, []string{"/a"}, []string{"/a\n"}, "/a", false},
		{`(/.*)?`, []string{"", "/x"}, []string{"x"}, "", false},
	} {
		match := compileForTest(t, tc.pattern)
		for _, s := range tc.match {
			if !match(s) {
				t.Errorf("%q does not match %q", tc.pattern, s)
			}
		}
		for _, s := range tc.nomatch {
			if match(s) {
				t.Errorf("%q matches %q", tc.pattern, s)
			}
		}
		pt, _ := parsePattern(tc.pattern)
		if prefix, whole := pt.literalPrefix(); prefix != tc.prefix || whole != tc.isPrefix {
			t.Errorf("%q: literal prefix %q, %v; want %q, %v", tc.pattern, prefix, whole, tc.prefix, tc.isPrefix)
		}
	}
}

func TestPatternErrors(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		want    error
	}{
		{`/a(b`, ErrSyntax},
		{`/a)b`, ErrSyntax},
		{`/[ab`, ErrSyntax},
		{`*a`, ErrUnsupportedPattern}, // "^*a": a quantified "^"
		{`a|*b`, ErrSyntax},
		{`/a|+`, ErrSyntax},
		{`/(?:{2})`, ErrSyntax},
		{`/[z-a]`, ErrSyntax},
		{`/a{3,2}`, ErrSyntax},
		{`/a{70000}`, ErrSyntax},
		{`/\i`, ErrSyntax},
		{`/\x{100}`, ErrSyntax},
		{`/(a)\1`, ErrUnsupportedPattern},
		{`/(?=a)`, ErrUnsupportedPattern},
		{`/(?!a)`, ErrUnsupportedPattern},
		{`/(?<=a)b`, ErrUnsupportedPattern},
		{`/(?<!a)b`, ErrUnsupportedPattern},
		{`/(?>a)`, ErrUnsupportedPattern},
		{`/a*+`, ErrUnsupportedPattern},
		{`/(?i)a`, ErrUnsupportedPattern},
		{`/(*UTF)a`, ErrUnsupportedPattern},
		{`/a$b`, ErrUnsupportedPattern},
		{`/(a$)`, ErrUnsupportedPattern},
		{`/a\Zb`, ErrUnsupportedPattern},
		{`/\pL`, ErrUnsupportedPattern},
		{`/a{1001}`, ErrUnsupportedPattern},
		{`/(a{100}){100}`, ErrUnsupportedPattern},
		{`/[[.a.]]`, ErrUnsupportedPattern},
		{`/[\d-z]`, ErrUnsupportedPattern},
		{`/^*`, ErrUnsupportedPattern},
	} {
		pt, err := parsePattern(tc.pattern)
		if err == nil {
			_, err = pt.compile(tc.pattern)
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.pattern, err, tc.want)
		}
	}
}

// refBudget bounds the reference matcher's steps.
const refBudget = 100000

// refMatch is a plain backtracking search with the parsed pattern,
// working on bytes as PCRE2 does. ok is false when it ran out of budget.
func refMatch(pt *pattern, s string) (matched, ok bool) {
	steps := 0
	var matchSeq func(seq []*node, i int, k func(int) bool) bool
	var matchNode func(n *node, i int, k func(int) bool) bool
	word := func(i int) bool { return i >= 0 && i < len(s) && isWord(s[i]) }
	matchNode = func(n *node, i int, k func(int) bool) bool {
		if steps++; steps > refBudget {
			return false
		}
		switch n.kind {
		case nodeLiteral:
			return i < len(s) && s[i] == n.b && k(i+1)
		case nodeSet:
			return i < len(s) && n.set.has(s[i]) && k(i+1)
		case nodeGroup:
			for _, alt := range n.alts {
				if matchSeq(alt, i, k) {
					return true
				}
			}
			return false
		case nodeRepeat:
			var rep func(count, i int) bool
			rep = func(count, i int) bool {
				if count >= n.min && k(i) {
					return true
				}
				if n.max >= 0 && count >= n.max {
					return false
				}
				return matchNode(n.sub, i, func(j int) bool {
					// An empty iteration only helps to reach min.
					if j == i && count >= n.min {
						return false
					}
					return rep(count+1, j)
				})
			}
			return rep(0, i)
		case nodeBeginText:
			return i == 0 && k(i)
		case nodeEndText:
			return i == len(s) && k(i)
		case nodeEndAlternative:
			return (i == len(s) || i == len(s)-1 && s[i] == '\n') && k(i)
		case nodeWordBoundary:
			return word(i-1) != word(i) && k(i)
		case nodeNotWordBoundary:
			return word(i-1) == word(i) && k(i)
		}
		panic("unknown node")
	}
	matchSeq = func(seq []*node, i int, k func(int) bool) bool {
		if len(seq) == 0 {
			return k(i)
		}
		return matchNode(seq[0], i, func(j int) bool { return matchSeq(seq[1:], j, k) })
	}
	// PCRE2 searches: a match may start and end anywhere.
	top := &node{kind: nodeGroup, alts: pt.alts}
	for start := 0; start <= len(s) && !matched; start++ {
		matched = matchNode(top, start, func(int) bool { return true })
	}
	return matched, steps <= refBudget
}

// FuzzPattern checks that parsing never panics, that errors are typed,
// and that a compiled pattern, its literal prefix and the byte mapping
// agree with the reference matcher.
func FuzzPattern(f *testing.F) {
	for _, seed := range []struct{ pattern, path string }{
		{`/usr/lib(/.*)?`, "/usr/lib/x"},
		{`/a[^/]b`, "/a\xc3\xa9b"},
		{`/\w+\s\d[[:alpha:]]`, "/ab\v1c"},
		{`/x{2,3}|/y*?`, "/yy\n"},
		{`/(a|b)+\b.`, "/ab."},
		{`/\Q.*\E\x41[\x80-\xff]`, "/.*A\x81"},
		{`/[]a-c\d]{2}`, "/]1"},
	} {
		f.Add(seed.pattern, seed.path)
	}
	f.Fuzz(func(t *testing.T, src, path string) {
		pt, err := parsePattern(src)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnsupportedPattern) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		re, err := pt.compile(src)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedPattern) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		got := re.MatchString(matchInput(path))
		if len(src) <= 64 && len(path) <= 32 {
			if want, ok := refMatch(pt, path); ok && got != want {
				t.Fatalf("%q on %q: compiled %v, reference %v (Go syntax %s)", src, path, got, want, pt.goSyntax())
			}
		}
		if nfa := buildBitNFA(pt); nfa != nil && nfa.match(path) != got {
			t.Fatalf("%q on %q: regexp %v, automaton %v", src, path, got, !got)
		}
		prefix, whole := pt.literalPrefix()
		if got && !strings.HasPrefix(path, prefix) {
			t.Fatalf("%q matches %q, which lacks the literal prefix %q", src, path, prefix)
		}
		if whole && got != (path == prefix || path == prefix+"\n") {
			t.Fatalf("%q is the literal %q, yet matching %q gives %v", src, prefix, path, got)
		}
	})
}
