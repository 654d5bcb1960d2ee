package selinux

import (
	"fmt"
	"strings"
)

// XattrName is the extended attribute that holds a file's label.
const XattrName = "security.selinux"

// XattrValue is the security.selinux value for label as libselinux's
// setfilecon writes it and libostree commits it: the label and a NUL.
func XattrValue(label string) []byte {
	return append([]byte(label), 0)
}

// Lookup returns the label of the file at path (absolute, as the file
// will be seen on the running system) whose st_mode is mode, as
// libselinux 3.4's selabel_lookup_raw answers it for the policy's file
// contexts: repeated slashes and one trailing slash are dropped, the
// .subs then .subs_dist equivalences applied, and the last matching
// specification wins (exact paths over regular expressions, later lines
// over earlier ones), among those with no file type or mode's (mode's
// S_IFMT bits, 0o170000; a mode with none matches every type).
// ok is false when no specification matches or the winning one says
// <<none>>: the file gets no label.
func (p *Policy) Lookup(path string, mode uint32) (label string, ok bool, err error) {
	if path == "" || strings.IndexByte(path, 0) >= 0 {
		return "", false, fmt.Errorf("%w: %q", ErrInvalidPath, path)
	}
	key := p.equivalent(cleanPath(path))
	s := p.match(key, mode&modeTypeMask)
	if s == nil || s.context == noneContext {
		return "", false, nil
	}
	return s.context, true, nil
}

// Label returns the label libostree 2022.7 commits for path
// (ostree_sepolicy_get_label): Lookup's, except that "/proc" is looked up
// as "/mnt" (libostree's workaround for policies that label /proc
// itself as a file system only).
func (p *Policy) Label(path string, mode uint32) (label string, ok bool, err error) {
	if path == "/proc" {
		path = "/mnt"
	}
	return p.Lookup(path, mode)
}

// cleanPath collapses runs of slashes and drops one trailing slash, as
// libselinux's lookup does (no "." or ".." handling).
func cleanPath(path string) string {
	if strings.Contains(path, "//") {
		var sb strings.Builder
		sb.Grow(len(path))
		for i := 0; i < len(path); i++ {
			if path[i] == '/' && i > 0 && path[i-1] == '/' {
				continue
			}
			sb.WriteByte(path[i])
		}
		path = sb.String()
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	return path
}

// equivalent applies the first matching .subs equivalence and then the
// first matching .subs_dist one to its result, or, when no .subs one
// matched, the first matching .subs_dist one (libselinux's
// selabel_sub_key).
func (p *Policy) equivalent(key string) string {
	if sub, ok := substitute(p.subs, key); ok {
		if dist, ok := substitute(p.distSubs, sub); ok {
			return dist
		}
		return sub
	}
	if dist, ok := substitute(p.distSubs, key); ok {
		return dist
	}
	return key
}

// substitute applies the first equivalence whose alias is key or a
// leading whole-component part of it (libselinux's selabel_sub).
func substitute(list []equivalence, key string) (string, bool) {
	for _, e := range list {
		if !strings.HasPrefix(key, e.alias) {
			continue
		}
		rest := key[len(e.alias):]
		if rest != "" && rest[0] != '/' {
			continue
		}
		if rest != "" && e.target == "/" {
			rest = rest[1:] // no "//" from a target of "/"
		}
		return e.target + rest, true
	}
	return "", false
}

// maxCandidateLists is how many prefix lists a lookup gathers without
// allocating.
const maxCandidateLists = 32

// match returns the specification libselinux's lookup_all picks for key
// and type (S_IFMT bits): the highest-numbered one that passes the stem
// and type filters and whose pattern matches. Only specifications whose
// literal prefix key starts with can match, so only those are tried,
// highest first, merged from the per-prefix lists.
func (p *Policy) match(key string, typ uint32) *spec {
	var buf [maxCandidateLists][]int32
	lists := p.index.collect(key, buf[:0])
	stem := pathStem(key)
	input, mapped := "", false
	for {
		best := -1
		for i, l := range lists {
			if len(l) > 0 && (best < 0 || l[len(l)-1] > lists[best][len(lists[best])-1]) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		id := lists[best][len(lists[best])-1]
		lists[best] = lists[best][:len(lists[best])-1]
		s := &p.specs[id]
		if s.stem != "" && s.stem != stem || typ != 0 && s.mode != 0 && s.mode != typ {
			continue
		}
		switch {
		case s.nfa == nil && s.re == nil:
			// A literal pattern; PCRE2's final "$" also matches before
			// a newline ending the path.
			if key == s.prefix || len(key) == len(s.prefix)+1 && key[len(key)-1] == '\n' && strings.HasPrefix(key, s.prefix) {
				return s
			}
		case s.nfa != nil:
			if s.nfa.match(key) {
				return s
			}
		default:
			if !mapped {
				input, mapped = matchInput(key), true
			}
			if s.re.MatchString(input) {
				return s
			}
		}
	}
}
