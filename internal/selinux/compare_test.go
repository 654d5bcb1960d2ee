package selinux

import (
	"errors"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/osimage/updatecache/internal/testtool"
)

// The st_mode file types, and modes with odd type bits, every lookup
// comparison tries.
var testModes = []uint32{
	0, 0o100000, 0o040000, 0o120000, 0o020000, 0o060000, 0o010000, 0o140000,
	0o100644, 0o040755, 0o755, 0o170000,
}

// debianPolicyFiles is where selinux-policy-default installs the file
// contexts of the Debian reference policy.
const debianPolicyFiles = "/etc/selinux/default/contexts/files"

// writePolicy writes files (name -> content) into a new policy type
// directory's contexts/files and returns the type directory.
func writePolicy(t testing.TB, files map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "test")
	dir := filepath.Join(root, filepath.FromSlash(path.Dir(fileContextsPath)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// loadPolicyDir loads the file contexts of a policy type directory.
func loadPolicyDir(t testing.TB, root string) *Policy {
	t.Helper()
	p, err := LoadFileContexts(os.DirFS(root), fileContextsPath)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// debianPolicyText returns the text files of the Debian reference policy
// (never the compiled .bin ones, which libselinux would otherwise prefer).
func debianPolicyText(t testing.TB) map[string]string {
	t.Helper()
	testtool.NeedFile(t, debianPolicyFiles+"/file_contexts", "selinux-policy-default")
	files := map[string]string{}
	for _, suffix := range []string{"", suffixHomedirs, suffixLocal, suffixSubsDist, suffixSubs} {
		data, err := os.ReadFile(debianPolicyFiles + "/file_contexts" + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files["file_contexts"+suffix] = string(data)
	}
	return files
}

// A .local and a .subs file added to the Debian policy: overrides of
// base specifications, a <<none>>, type-specific and generic lines for one
// path, and equivalences chained into .subs_dist, to "/" and to a target
// with a trailing slash.
const (
	testLocal = `# local customisations
/opt/special(/.*)?	system_u:object_r:bin_t:s0
/etc/passwd	--	system_u:object_r:shadow_t:s0
/usr/bin/ls	<<none>>
/srv/x	-d	system_u:object_r:var_t:s0
/srv/x(/.*)?	system_u:object_r:tmp_t:s0
/usr/lib/systemd/system/special\.service	--	system_u:object_r:etc_t:s0
`
	testSubs = `/myroot/usr /usr
/lib64 /opt
/srv/alias /
/weird /usr/
   # a comment
/alias/bin /bin
`
)

// specPatterns parses the patterns of every specification line of a
// file_contexts text.
func specPatterns(t testing.TB, text string) []*pattern {
	t.Helper()
	var patterns []*pattern
	for _, line := range strings.Split(text, "\n") {
		fields := splitFields(line, 1)
		if len(fields) == 0 || fields[0][0] == '#' {
			continue
		}
		pt, err := parsePattern(fields[0])
		if err != nil {
			t.Fatal(err)
		}
		patterns = append(patterns, pt)
	}
	return patterns
}

// samplePath returns a path the pattern matches (unless it holds an
// assertion that the choices break), picking letters, digits and "/"
// where a set allows them.
func samplePath(rng *rand.Rand, pt *pattern) string {
	var sb strings.Builder
	var genAlts func(alts [][]*node)
	var genNode func(n *node)
	genAlts = func(alts [][]*node) {
		for _, n := range alts[rng.Intn(len(alts))] {
			genNode(n)
		}
	}
	genNode = func(n *node) {
		switch n.kind {
		case nodeLiteral:
			sb.WriteByte(n.b)
		case nodeSet:
			const friendly = "abcxyz019/._-"
			for range 8 {
				if c := friendly[rng.Intn(len(friendly))]; n.set.has(c) {
					sb.WriteByte(c)
					return
				}
			}
			for {
				if c := byte(rng.Intn(256)); n.set.has(c) {
					sb.WriteByte(c)
					return
				}
			}
		case nodeGroup:
			genAlts(n.alts)
		case nodeRepeat:
			count := n.min + rng.Intn(3)
			if n.max >= 0 && count > n.max {
				count = n.max
			}
			for range count {
				genNode(n.sub)
			}
		}
	}
	genAlts(pt.alts)
	return sb.String()
}

// mutatePath returns a variant of path that probes normalisation and
// byte handling: repeated or trailing slashes, a final newline, a
// non-ASCII byte, a cut, an extra component, an equivalence alias.
func mutatePath(rng *rand.Rand, path string) string {
	switch rng.Intn(10) {
	case 0:
		return path + "/"
	case 1:
		return strings.Replace(path, "/", "//", 1+rng.Intn(2))
	case 2:
		return path + "\n"
	case 3:
		i := rng.Intn(len(path) + 1)
		return path[:i] + []string{"\xc3\xa9", "\xff", "\x80"}[rng.Intn(3)] + path[i:]
	case 4:
		return path[:rng.Intn(len(path)+1)]
	case 5:
		return path + "/" + []string{"x", ".", "..", "a.conf", "lib64"}[rng.Intn(5)]
	case 6:
		return "/usr" + path
	case 7:
		for _, alias := range [][2]string{{"/usr/bin", "/bin"}, {"/usr/lib", "/lib64"}, {"/run", "/var/run"}, {"/usr", "/myroot/usr"}, {"/usr/lib", "/usr/local/lib64"}} {
			if strings.HasPrefix(path, alias[0]) {
				return alias[1] + path[len(alias[0]):]
			}
		}
		return "/srv/alias" + path
	case 8:
		return strings.ToUpper(path)
	}
	return path + "\x01"
}

// handPicked are paths every comparison tries with every mode.
var handPicked = []string{
	"", "/", "//", "///", "/.", "/..", "relative", ".", "/proc", "/proc/1", "/mnt", "/sys", "/dev/null",
	"/usr/etc/shadow", "/usr/etc/selinux/config", "/usr/etc", "/etc/shadow", "/etc/passwd", "/etc/passwd\n",
	"/etc/passwd/", "/etc//passwd", "/etc/passwd\n\n", "/root", "/home/user/.ssh/authorized_keys",
	"/var/run/x", "/run/lock/y", "/var/lock/y", "/bin/sh", "/lib64/ld-linux-x86-64.so.2", "/usr/lib64/x",
	"/usr/local/lib64/x", "/opt/special", "/opt/special/x", "/usr/bin/ls", "/srv/x", "/srv/x/y",
	"/srv/alias", "/srv/alias/usr/bin/ls", "/weird/bin/bash", "/myroot/usr/bin/bash", "/alias/bin/sh",
	"/usr/lib/systemd/system/special.service", "/usr/share/factory/var/lib/x", "/ostree/repo/objects",
	"/sysroot/ostree", "/var/lib/dpkg/status", "/tmp/.X11-unix/X0", "/usr/bin/\xff", "/\xc3\xa9t\xc3\xa9",
	"/" + strings.Repeat("a/", 3000),
}

// TestLookupMatchesLibselinuxDebianPolicy compares Lookup with libselinux
// on the Debian reference policy plus a .local and a .subs file, for
// paths generated from every specification, variants of them, hand-picked
// ones, in every file type, and this machine's own /usr and /etc.
func TestLookupMatchesLibselinuxDebianPolicy(t *testing.T) {
	files := debianPolicyText(t)
	l := startLibselinux(t)
	files["file_contexts"+suffixLocal] = testLocal
	files["file_contexts"+suffixSubs] = testSubs
	root := writePolicy(t, files)
	if errno := l.open(root); errno != 0 {
		t.Fatalf("libselinux selabel_open: %v", errno)
	}
	p := loadPolicyDir(t, root)

	rng := rand.New(rand.NewSource(1))
	var queries []query
	addAllModes := func(path string) {
		for _, mode := range testModes {
			queries = append(queries, query{path, mode})
		}
	}
	for _, path := range handPicked {
		addAllModes(path)
	}
	queries = append(queries, sample(realisticPaths(), 3000)...)
	var patterns []*pattern
	for _, suffix := range []string{"", suffixHomedirs, suffixLocal} {
		patterns = append(patterns, specPatterns(t, files["file_contexts"+suffix])...)
	}
	for i, pt := range patterns {
		path := samplePath(rng, pt)
		if i%10 == 0 {
			addAllModes(path)
		} else {
			queries = append(queries, query{path, testModes[rng.Intn(len(testModes))]})
		}
		queries = append(queries, query{mutatePath(rng, path), testModes[rng.Intn(len(testModes))]})
	}
	if diffs := compareWithLibselinux(t, l, p, queries); diffs > 0 {
		t.Fatalf("%d of %d lookups differ from libselinux", diffs, len(queries))
	}
	labelled := 0
	for _, q := range queries {
		if _, ok, _ := p.Lookup(q.path, q.mode); ok {
			labelled++
		}
	}
	t.Logf("%d lookups (%d specifications) agree with libselinux; %d got a label", len(queries), len(p.specs), labelled)
	if labelled < len(queries)/2 || labelled == len(queries) {
		t.Errorf("%d of %d lookups labelled: the path mix does not exercise both outcomes", labelled, len(queries))
	}
}

// precedencePolicy exercises libselinux's choice among several matching
// specifications (see TestLookupPrecedence).
const precedencePolicy = `
/.*			system_u:object_r:default_t:s0
/a(/.*)?		system_u:object_r:a_t:s0
/a/b		--	system_u:object_r:ab_file_t:s0
/a/b			system_u:object_r:ab_t:s0
/a/c(/.*)?	-d	system_u:object_r:ac_dir_t:s0
/a/c/x.*		<<none>>
/a/[^/]+\.conf		system_u:object_r:conf_t:s0
/a/d			system_u:object_r:d_t:s0
/a/d		-d	system_u:object_r:d_dir_t:s0
/a/e\.x			system_u:object_r:e_t:s0
/a/e.x			system_u:object_r:e_regex_t:s0
/x/y|/a/z		system_u:object_r:alternation_t:s0
/b			<<none>>
/b(/.*)?		system_u:object_r:b_t:s0
/c(/.*)?		system_u:object_r:c_t:s0
/c/sub(/.*)?		<<none>>
/c/sub/keep		system_u:object_r:keep_t:s0
/dup			system_u:object_r:first_t:s0
/dup			system_u:object_r:second_t:s0
/q/r|/s			system_u:object_r:unanchored_t:s0
`

// lookupCase is a lookup and the label it gets ("" for none).
type lookupCase struct {
	path  string
	mode  uint32
	label string
}

// checkLookups checks Lookup's answers on a policy made of files
// (file_contexts and the files beside it) and, in a subtest, that they
// are libselinux's answers too.
func checkLookups(t *testing.T, files map[string]string, cases []lookupCase) {
	t.Helper()
	root := writePolicy(t, files)
	p := loadPolicyDir(t, root)
	for _, tc := range cases {
		label, ok, err := p.Lookup(tc.path, tc.mode)
		if err != nil || ok != (tc.label != "") || label != tc.label {
			t.Errorf("Lookup(%q, %#o) = %q, %v, %v; want %q", tc.path, tc.mode, label, ok, err, tc.label)
		}
	}
	t.Run("libselinux", func(t *testing.T) {
		l := startLibselinux(t)
		if errno := l.open(root); errno != 0 {
			t.Fatalf("libselinux selabel_open: %v", errno)
		}
		var queries []query
		for _, tc := range cases {
			queries = append(queries, query{tc.path, tc.mode})
		}
		for i, a := range l.lookup(queries) {
			want := answer{ok: true, label: cases[i].label}
			if want.label == "" {
				want = answer{errno: syscall.ENOENT}
			}
			if a != want {
				t.Errorf("libselinux: %q %#o -> %v; the test expects %v", queries[i].path, queries[i].mode, a, want)
			}
		}
	})
}

func TestLookupPrecedence(t *testing.T) {
	checkLookups(t, map[string]string{"file_contexts": precedencePolicy}, []lookupCase{
		{"/a/b", 0o100644, "system_u:object_r:ab_t:s0"}, // the later exact line, though untyped
		{"/a/b", 0o040755, "system_u:object_r:ab_t:s0"},
		{"/a/c", 0o040755, "system_u:object_r:ac_dir_t:s0"},
		{"/a/c", 0o100644, "system_u:object_r:a_t:s0"}, // the -d line is skipped
		{"/a/c", 0, "system_u:object_r:ac_dir_t:s0"},   // no type: every line applies
		{"/a/c/xy", 0o100644, ""},                      // <<none>> wins: no label
		{"/a/x.conf", 0o100644, "system_u:object_r:conf_t:s0"},
		{"/a//x.conf/", 0o100644, "system_u:object_r:conf_t:s0"},
		{"/a/b\n", 0o100644, "system_u:object_r:ab_t:s0"},  // "$" before a final newline
		{"/a/d", 0o040755, "system_u:object_r:d_dir_t:s0"}, // exact lines in file order
		{"/a/d", 0o100644, "system_u:object_r:d_t:s0"},
		{"/a/e.x", 0o100644, "system_u:object_r:e_t:s0"},       // exact sorts after regex
		{"/a/e_x", 0o100644, "system_u:object_r:e_regex_t:s0"}, //
		{"/a/z", 0o100644, "system_u:object_r:a_t:s0"},         // stem "/x" hides the alternative
		{"/x/y", 0o100644, "system_u:object_r:alternation_t:s0"},
		{"/b", 0o040755, ""}, // the exact <<none>> line beats the later regex
		{"/b/x", 0o040755, "system_u:object_r:b_t:s0"},
		{"/c/sub/keep", 0o100644, "system_u:object_r:keep_t:s0"},
		{"/c/sub/other", 0o100644, ""},
		{"/dup", 0o100644, "system_u:object_r:second_t:s0"},
		{"/zzz", 0o100644, "system_u:object_r:default_t:s0"},
		// "^/q/r|/s$": the first alternative is a prefix, the last a suffix.
		{"/q/r/anything", 0o100644, "system_u:object_r:unanchored_t:s0"},
		{"/q/x/s", 0o100644, "system_u:object_r:unanchored_t:s0"},
		{"/q/x", 0o100644, "system_u:object_r:default_t:s0"},
		{"/x/s", 0o100644, "system_u:object_r:default_t:s0"}, // stem "/q" only
		{"zzz", 0o100644, ""},
	})
}

// patternPieces are the fragments random patterns are built from:
// supported syntax, syntax Go cannot express, and broken syntax.
var patternPieces = []string{
	"a", "b", "x", "/", "-", "_", ".", `\.`, `\/`, `\-`, `\\`, `\d`, `\D`, `\w`, `\W`, `\s`, `\S`, `\x41`, `\x`, `\0`,
	`\n`, `\t`, `\e`, `\b`, `\B`, `\A`, `\z`, `\Z`, `\1`, `\Qa.\E`, `\E`, `\i`, `\pL`, `\h`, `\N`, `\x{62}`, `\o{141}`,
	"[a-c]", "[^/]", "[[:alpha:]]", "[[:^digit:]]", `[\d-]`, "[]a]", "[^]a]", "[z-a]", `[\b]`, "[[.a.]]", "[a", `[\x80-\xff]`,
	"(", ")", "(?:", "(?=", "(?!", "(?<n>", "(?#c)", "(?i)", "(?>", "|", "*", "+", "?", "{2}", "{1,3}", "{2,}",
	"{,2}", "{x}", "*?", "*+", "{3,1}", "^", "$", "(/.*)?", "(.*/)?", "(a|b)", "[0-9]+",
}

// randomPattern joins a few random pieces, mostly after a "/".
func randomPattern(rng *rand.Rand) string {
	var sb strings.Builder
	if rng.Intn(8) != 0 {
		sb.WriteString("/")
		if rng.Intn(2) == 0 {
			sb.WriteString("s/")
		}
	}
	for range 1 + rng.Intn(6) {
		sb.WriteString(patternPieces[rng.Intn(len(patternPieces))])
	}
	return sb.String()
}

// TestPatternsMatchLibselinux compares the regular-expression dialect
// with libselinux's PCRE2: random patterns, each alone in a policy, looked
// up with paths generated from them and random ones. A pattern this
// package accepts must compile in libselinux and match the same paths; a
// pattern libselinux cannot compile must be refused; one refused as a
// syntax error must fail in libselinux too.
func TestPatternsMatchLibselinux(t *testing.T) {
	l := startLibselinux(t)
	root := writePolicy(t, map[string]string{})
	files := filepath.Join(root, filepath.FromSlash(fileContextsPath))
	rng := rand.New(rand.NewSource(2))
	n := 1500
	if testing.Short() {
		n = 200
	}
	counts := map[string]int{}
	for range n {
		src := randomPattern(rng)
		if strings.ContainsAny(src, " \t") {
			continue
		}
		// The pattern under test goes after a line that matches every
		// path, so it is tried first: a path it matches gets m_t, one
		// it does not gets any_t, and a pattern PCRE2 cannot compile
		// makes the lookup fail.
		if err := os.WriteFile(files, []byte(".*\tsystem_u:object_r:any_t:s0\n"+src+"\tsystem_u:object_r:m_t:s0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if errno := l.open(root); errno != 0 {
			t.Fatalf("libselinux selabel_open: %v", errno)
		}
		stem := specStem(src)
		paths := []string{stem + "/zz", stem + "/", "/", "/a", "/s/a"}
		pt, parseErr := parsePattern(src)
		if parseErr == nil {
			for range 6 {
				path := samplePath(rng, pt)
				paths = append(paths, path, mutatePath(rng, path))
			}
		}
		for range 4 {
			paths = append(paths, randomBytes(rng, "/as.-_x\n\xff1", 6))
		}
		var queries []query
		for _, path := range paths {
			if path != "" && !strings.Contains(path, "\x00") { // C strings
				queries = append(queries, query{path, 0})
			}
		}
		answers := l.lookup(queries)
		// libselinux compiles a pattern when a lookup first tries it,
		// which a path with a different stem never does.
		reached := stem == ""
		for _, q := range queries {
			reached = reached || pathStem(cleanPath(q.path)) == stem
		}
		pcreFailed := false
		for _, a := range answers {
			if !a.ok {
				pcreFailed = true
			}
		}
		_, err := LoadFileContexts(os.DirFS(root), fileContextsPath)
		switch {
		case errors.Is(err, ErrUnsupportedPattern):
			counts["unsupported"]++
			if pcreFailed {
				counts["unsupported, PCRE2 refuses too"]++
			}
		case errors.Is(err, ErrSyntax):
			counts["syntax error"]++
			if reached && !pcreFailed {
				t.Errorf("%q: refused as a syntax error, but libselinux compiles it: %v", src, err)
			}
		case err != nil:
			t.Fatalf("%q: %v", src, err)
		case pcreFailed:
			t.Errorf("%q: accepted, but libselinux cannot compile it", src)
		default:
			counts["accepted"]++
			p := loadPolicyDir(t, root)
			if p.specs[len(p.specs)-1].nfa != nil {
				counts["accepted, automaton"]++
			}
			for i, q := range queries {
				if got := goAnswer(p, q); got != answers[i] {
					t.Errorf("%q: Lookup(%q) = %v; libselinux says %v (Go syntax %s)", src, q.path, got, answers[i], pt.goSyntax())
				}
				if answers[i].label == "system_u:object_r:m_t:s0" {
					counts["matches"]++
				}
			}
		}
	}
	t.Logf("patterns: %v", counts)
	if counts["accepted"] < n/4 || counts["matches"] < n/4 {
		t.Errorf("too few patterns accepted or paths matched to prove much: %v", counts)
	}
}

// randomBytes returns up to max bytes drawn from alphabet, after a "/".
func randomBytes(rng *rand.Rand, alphabet string, max int) string {
	b := []byte{'/'}
	for range rng.Intn(max + 1) {
		b = append(b, alphabet[rng.Intn(len(alphabet))])
	}
	return string(b)
}
