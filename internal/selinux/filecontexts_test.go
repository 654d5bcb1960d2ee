package selinux

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// policyFS is an fs.FS holding file contexts at fcPath (and beside it).
func policyFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for suffix, content := range files {
		fsys[fcPath+suffix] = &fstest.MapFile{Data: []byte(content), Mode: 0o644}
	}
	return fsys
}

const fcPath = "etc/selinux/test/contexts/files/file_contexts"

func TestLoadFileContextsErrors(t *testing.T) {
	cases := []struct {
		name   string
		files  map[string]string
		want   error
		file   string // "" when no *SyntaxError is expected
		line   int
		inText string
		// libselinux's selabel_open fails as well (it compiles a
		// regular expression only when a lookup first tries it).
		openFails bool
	}{
		{"missing fields", map[string]string{"": "# c\n\n/a\n"}, ErrSyntax, fcPath, 3, "missing fields", true},
		{"unknown file type", map[string]string{"": "/a -- system_u:object_r:a_t:s0\n/b -x system_u:object_r:b_t:s0\n"}, ErrSyntax, fcPath, 2, `invalid file type "-x"`, true},
		{"file type without dash", map[string]string{"": "/b d system_u:object_r:b_t:s0\n"}, ErrSyntax, fcPath, 1, "invalid file type", true},
		{"non-ASCII", map[string]string{"": "/caf\xc3\xa9 system_u:object_r:b_t:s0\n"}, ErrSyntax, fcPath, 1, "non-ASCII", true},
		{"non-ASCII context", map[string]string{"": "/a system_u:object_r:\xff\n"}, ErrSyntax, fcPath, 1, "non-ASCII", true},
		{"invalid regex", map[string]string{"": "/a(b system_u:object_r:b_t:s0\n"}, ErrSyntax, fcPath, 1, "missing )", false},
		{"backreference", map[string]string{"": "/(a)\\1 system_u:object_r:b_t:s0\n"}, ErrUnsupportedPattern, fcPath, 1, "backreference", false},
		{"lookahead", map[string]string{"": "\n/(?=a)a system_u:object_r:b_t:s0\n"}, ErrUnsupportedPattern, fcPath, 2, "(?=", false},
		{"error in .local", map[string]string{"": "/a system_u:object_r:a_t:s0\n", ".local": "/b -q system_u:object_r:b_t:s0\n"}, ErrSyntax, fcPath + ".local", 1, "invalid file type", true},
		{"error in .homedirs", map[string]string{"": "/a system_u:object_r:a_t:s0\n", ".homedirs": "/home/(a)\\1 c\n"}, ErrUnsupportedPattern, fcPath + ".homedirs", 1, "backreference", false},
		{"no base file", map[string]string{".local": "/a system_u:object_r:a_t:s0\n"}, ErrPolicyNotFound, "", 0, "file_contexts", true},
		{"only the compiled file", map[string]string{".bin": "\x8a\xff\x7c\xf9"}, ErrPolicyNotFound, "", 0, "file_contexts", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadFileContexts(policyFS(tc.files), fcPath)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.inText) {
				t.Errorf("%q does not say %q", err, tc.inText)
			}
			var se *SyntaxError
			if tc.file == "" {
				if errors.As(err, &se) {
					t.Errorf("unexpected *SyntaxError %v", se)
				}
				return
			}
			if !errors.As(err, &se) {
				t.Fatalf("%v is no *SyntaxError", err)
			}
			if se.File != tc.file || se.Line != tc.line {
				t.Errorf("error at %s:%d, want %s:%d", se.File, se.Line, tc.file, tc.line)
			}
			if !strings.HasPrefix(err.Error(), tc.file+":"+strconv.Itoa(tc.line)+": ") {
				t.Errorf("%q does not start with the file and line", err)
			}
		})
	}
	t.Run("libselinux", func(t *testing.T) {
		l := startLibselinux(t)
		for _, tc := range cases {
			files := map[string]string{}
			for suffix, content := range tc.files {
				files["file_contexts"+suffix] = content
			}
			if errno := l.open(writePolicy(t, files)); (errno != 0) != tc.openFails {
				t.Errorf("%s: libselinux selabel_open: errno %d", tc.name, errno)
			}
		}
	})
}

func TestLoadFileContextsTooLarge(t *testing.T) {
	fsys := fstest.MapFS{fcPath: &fstest.MapFile{Data: make([]byte, maxPolicyFile+1)}}
	if _, err := LoadFileContexts(fsys, fcPath); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("got %v, want ErrInvalidPolicy", err)
	}
}

// TestLineSyntax covers libselinux's reading of lines: any C whitespace
// separates fields, a fourth field is ignored, a NUL ends the line, CRLF
// line ends leave no "\r" in the context, a two-field line's second field
// is the context even when it looks like a file type.
func TestLineSyntax(t *testing.T) {
	checkLookups(t, map[string]string{"file_contexts": "" +
		"  # indented comment\n" +
		"/a\v-d\f system_u:object_r:a_t:s0 extra \xff fields\n" +
		"/b\tsystem_u:object_r:b_t:s0\x00 ignored after NUL\n" +
		"/c system_u:object_r:c_t:s0\r\n" +
		"/d --\n" +
		"/e system_u:object_r:e_t:s0", // no final newline
	}, []lookupCase{
		{"/a", 0o040000, "system_u:object_r:a_t:s0"},
		{"/a", 0o100000, ""},
		{"/b", 0o100000, "system_u:object_r:b_t:s0"},
		{"/c", 0o100000, "system_u:object_r:c_t:s0"},
		{"/d", 0o100000, "--"},
		{"/e", 0o100000, "system_u:object_r:e_t:s0"},
	})
}

// TestEquivalences covers .subs and .subs_dist: .subs first, .subs_dist
// on its result, the last matching line of each, whole components only.
func TestEquivalences(t *testing.T) {
	checkLookups(t, map[string]string{
		"file_contexts": "/.* system_u:object_r:default_t:s0\n" +
			"/usr/bin(/.*)? system_u:object_r:bin_t:s0\n" +
			"/usr/lib(/.*)? system_u:object_r:lib_t:s0\n" +
			"/opt(/.*)? system_u:object_r:opt_t:s0\n",
		"file_contexts.subs_dist": "/bin /usr/bin\n/lib64 /usr/lib\n/lib64/x /opt\n",
		"file_contexts.subs":      "# local\n  /mine/lib64 /lib64\n/top /\n/slash /usr/\n/bin /opt\nlonely\n",
	}, []lookupCase{
		{"/bin/sh", 0o100644, "system_u:object_r:opt_t:s0"},             // .subs's /opt/sh has no .subs_dist alias
		{"/lib64/x/y", 0o100644, "system_u:object_r:opt_t:s0"},          // the later .subs_dist line wins
		{"/lib64/libc.so", 0o100644, "system_u:object_r:lib_t:s0"},      //
		{"/lib64", 0o040755, "system_u:object_r:lib_t:s0"},              // the whole path is an alias
		{"/lib64x", 0o100644, "system_u:object_r:default_t:s0"},         // whole components only
		{"/mine/lib64/libc.so", 0o100644, "system_u:object_r:lib_t:s0"}, // .subs then .subs_dist
		{"/top/usr/bin/ls", 0o100644, "system_u:object_r:bin_t:s0"},     // a target "/" adds no "//"
		{"/slash/bin/ls", 0o100644, "system_u:object_r:default_t:s0"},   // "/usr//bin/ls": not normalised after
		{"//lib64//libc.so/", 0o100644, "system_u:object_r:lib_t:s0"},   // normalised before
		{"/mnt/lib64/x", 0o100644, "system_u:object_r:default_t:s0"},    // aliases are prefixes
	})
}

func TestLookupInvalidPath(t *testing.T) {
	p, err := LoadFileContexts(policyFS(map[string]string{"": "/.* system_u:object_r:default_t:s0\n"}), fcPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", "/a\x00b"} {
		if _, _, err := p.Lookup(path, 0); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Lookup(%q): %v, want ErrInvalidPath", path, err)
		}
	}
}

func TestLabelProcAndXattr(t *testing.T) {
	p, err := LoadFileContexts(policyFS(map[string]string{"": "" +
		"/proc -d system_u:object_r:proc_t:s0\n" +
		"/mnt -d system_u:object_r:mnt_t:s0\n"}), fcPath)
	if err != nil {
		t.Fatal(err)
	}
	if label, _, _ := p.Lookup("/proc", 0o040755); label != "system_u:object_r:proc_t:s0" {
		t.Errorf("Lookup(/proc) = %q", label)
	}
	if label, _, _ := p.Label("/proc", 0o040755); label != "system_u:object_r:mnt_t:s0" {
		t.Errorf("Label(/proc) = %q, want /mnt's label", label)
	}
	if got := XattrValue("system_u:object_r:mnt_t:s0"); string(got) != "system_u:object_r:mnt_t:s0\x00" {
		t.Errorf("XattrValue = %q", got)
	}
}

// FuzzLoadFileContexts checks that loading any file and looking any path
// up never panics, and that every error is typed.
func FuzzLoadFileContexts(f *testing.F) {
	f.Add([]byte(precedencePolicy), []byte("/bin /usr/bin\n"), "/a//b/", uint32(0o100644))
	f.Add([]byte("/a(/.*)?\t-d\t<<none>>\n/a/[^/]+ c\n"), []byte("/x /a\n"), "/x/y", uint32(0o040000))
	f.Fuzz(func(t *testing.T, contexts, subs []byte, path string, mode uint32) {
		fsys := fstest.MapFS{
			fcPath:             &fstest.MapFile{Data: contexts},
			fcPath + ".subs":   &fstest.MapFile{Data: subs},
			fcPath + ".local":  &fstest.MapFile{Data: subs},
			fcPath + ".ignore": &fstest.MapFile{},
		}
		p, err := LoadFileContexts(fsys, fcPath)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnsupportedPattern) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		label, ok, err := p.Lookup(path, mode)
		if err != nil && !errors.Is(err, ErrInvalidPath) {
			t.Fatalf("untyped error %v", err)
		}
		if ok == (label == "") || label == noneContext {
			t.Fatalf("Lookup = %q, %v", label, ok)
		}
	})
}
