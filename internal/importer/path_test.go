package importer

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPathFilter(t *testing.T) {
	long := strings.Repeat("a", maxNameLen)
	tests := []struct {
		name        string
		filter      pathFilter
		in          string
		wantPath    string
		wantDropped string
		wantErr     error
	}{
		{name: "usr kept", in: "usr/bin/sh", wantPath: "usr/bin/sh"},
		{name: "dot slash prefix", in: "./usr/bin/", wantPath: "usr/bin"},
		{name: "absolute", in: "/usr/lib/x", wantPath: "usr/lib/x"},
		{name: "doubled slashes and dots", in: "//usr/./lib//./x/", wantPath: "usr/lib/x"},
		{name: "root as dot", in: ".", wantPath: ""},
		{name: "root as dot slash", in: "./", wantPath: ""},
		{name: "root as slash", in: "/", wantPath: ""},
		{name: "empty name is the root", in: "", wantPath: ""},
		{name: "etc remapped", in: "etc/passwd", wantPath: "usr/etc/passwd"},
		{name: "etc itself remapped", in: "./etc/", wantPath: "usr/etc"},
		{name: "usr/etc untouched", in: "usr/etc/passwd", wantPath: "usr/etc/passwd"},
		{name: "var to factory", in: "var/lib/rpm", wantPath: "usr/share/factory/var/lib/rpm"},
		{name: "var itself to factory", in: "var", wantPath: "usr/share/factory/var"},
		{name: "var kept on request", filter: pathFilter{keepVar: true}, in: "var/lib/rpm", wantPath: "var/lib/rpm"},
		{name: "tmp dir kept", in: "tmp/", wantPath: "tmp"},
		{name: "tmp content dropped", in: "tmp/x", wantDropped: "tmp"},
		{name: "run content dropped", in: "/run/a/b", wantDropped: "run"},
		{name: "proc dir kept", in: "proc", wantPath: "proc"},
		{name: "sys content dropped", in: "sys/kernel", wantDropped: "sys"},
		{name: "dev content dropped", in: "dev/null", wantDropped: "dev"},
		{name: "tmp content dropped even when non-usr allowed", filter: pathFilter{allowNonUsr: true}, in: "tmp/x", wantDropped: "tmp"},
		{name: "other top level dropped", in: "boot/vmlinuz", wantDropped: "boot"},
		{name: "other top-level dir itself dropped", in: "opt/", wantDropped: "opt"},
		{name: "top-level file dropped", in: ".dockerenv", wantDropped: ".dockerenv"},
		{name: "other top level allowed", filter: pathFilter{allowNonUsr: true}, in: "opt/app/x", wantPath: "opt/app/x"},
		{name: "whiteout at top level is an other top level", in: ".wh.opt", wantDropped: ".wh.opt"},
		{name: "dotdot refused", in: "usr/../etc/shadow", wantErr: ErrInvalidPath},
		{name: "leading dotdot refused", in: "../x", wantErr: ErrInvalidPath},
		{name: "trailing dotdot refused", in: "usr/lib/..", wantErr: ErrInvalidPath},
		{name: "dotdot in dropped area refused", in: "tmp/../usr/x", wantErr: ErrInvalidPath},
		{name: "dots that are names are fine", in: "usr/...", wantPath: "usr/..."},
		{name: "invalid utf-8", in: "usr/\xff", wantErr: ErrInvalidPath},
		{name: "NUL", in: "usr/a\x00b", wantErr: ErrInvalidPath},
		{name: "component at NAME_MAX", in: "usr/" + long, wantPath: "usr/" + long},
		{name: "component over NAME_MAX", in: "usr/" + long + "b", wantErr: ErrInvalidPath},
		{name: "path over PATH_MAX", in: strings.Repeat("usr/", maxPathLen/4+1), wantErr: ErrInvalidPath},
		{name: "path over PATH_MAX once remapped", in: "var/" + strings.Repeat("a/", (maxPathLen-8)/2), wantErr: ErrInvalidPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, dropped, err := tt.filter.apply(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("apply(%q) error = %v, want %v", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("apply(%q): %v", tt.in, err)
			}
			if p != tt.wantPath || dropped != tt.wantDropped {
				t.Errorf("apply(%q) = (%q, dropped %q), want (%q, dropped %q)", tt.in, p, dropped, tt.wantPath, tt.wantDropped)
			}
		})
	}
}

// FuzzTarPath checks the path rules on arbitrary names: no panic; a kept
// path is relative, has no empty, "." or ".." component and respects the
// length bounds; a dropped entry names a single top-level component; and
// applying the rules to a kept path leaves it where it is, so a hard link
// naming the mapped path finds its target.
func FuzzTarPath(f *testing.F) {
	for _, s := range []string{"usr/bin/sh", "/etc//passwd", "./var/lib/", "tmp/x", "../x", "usr/./../a", ".", "", "/", "opt", "\xff", "a\x00b", "usr/.wh..wh..opq"} {
		f.Add(s, false, false)
	}
	f.Fuzz(func(t *testing.T, name string, keepVar, allowNonUsr bool) {
		pf := pathFilter{keepVar: keepVar, allowNonUsr: allowNonUsr}
		p, dropped, err := pf.apply(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidPath) {
				t.Fatalf("apply(%q): error %v does not wrap ErrInvalidPath", name, err)
			}
			return
		}
		if dropped != "" {
			if p != "" || strings.Contains(dropped, "/") || dropped == "." || dropped == ".." {
				t.Fatalf("apply(%q) = (%q, dropped %q)", name, p, dropped)
			}
			return
		}
		if len(p) > maxPathLen || !utf8.ValidString(p) || strings.IndexByte(p, 0) >= 0 {
			t.Fatalf("apply(%q) = %q: over length, not UTF-8 or has NUL", name, p)
		}
		if p == "" {
			return
		}
		for c := range strings.SplitSeq(p, "/") {
			if c == "" || c == "." || c == ".." || len(c) > maxNameLen {
				t.Fatalf("apply(%q) = %q: bad component %q", name, p, c)
			}
		}
		again, dropped2, err := pf.apply(p)
		if err != nil || dropped2 != "" || again != p {
			t.Fatalf("apply(%q) = %q, but apply(%q) = (%q, dropped %q, %v)", name, p, p, again, dropped2, err)
		}
	})
}
