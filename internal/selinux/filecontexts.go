package selinux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"slices"
	"strings"
)

// maxPolicyFile caps the size of each policy file read (real
// file_contexts are well under a megabyte; the binary policy a few).
const maxPolicyFile = 64 << 20

// The suffixes of the files libselinux's file backend reads beside the
// base file_contexts, in its order: specifications, then equivalences.
const (
	suffixHomedirs = ".homedirs"
	suffixLocal    = ".local"
	suffixSubsDist = ".subs_dist"
	suffixSubs     = ".subs"
)

// noneContext is the context that means "leave unlabelled".
const noneContext = "<<none>>"

// modeTypeMask selects the file-type bits of an st_mode (S_IFMT).
const modeTypeMask = 0o170000

// fileTypes are the file-type qualifiers of a specification line.
var fileTypes = map[string]uint32{
	"--": 0o100000, // S_IFREG
	"-d": 0o040000, // S_IFDIR
	"-l": 0o120000, // S_IFLNK
	"-b": 0o060000, // S_IFBLK
	"-c": 0o020000, // S_IFCHR
	"-p": 0o010000, // S_IFIFO
	"-s": 0o140000, // S_IFSOCK
}

// Policy holds the file contexts of an SELinux policy, compiled for
// lookups. It is immutable; its methods are safe for concurrent use.
type Policy struct {
	name     string
	checksum string
	// specs are in libselinux's order after loading: the specifications
	// with regex meta-characters, then the "exact" ones, each group in
	// load order (base, .homedirs, .local; file order within each). The
	// last specification that matches wins.
	specs    []spec
	index    prefixIndex
	subs     []equivalence // .subs, then .subs_dist applies to the result
	distSubs []equivalence
}

// spec is one compiled specification line.
type spec struct {
	context string
	mode    uint32 // S_IFMT bits; 0 for any type
	// stem is libselinux's stem: the regex text up to its second "/"
	// when that part holds no meta-character, else "". A specification
	// with a stem is tried only for paths whose own stem is the same.
	stem string
	// prefix starts every path the pattern matches; nfa and re are nil
	// when the pattern is exactly that literal.
	prefix string
	nfa    *bitNFA        // the pattern's automaton, when it has the plain shape
	re     *regexp.Regexp // otherwise Go's regexp
}

// equivalence is one line of a .subs or .subs_dist file: a path prefix
// looked up as another.
type equivalence struct {
	alias, target string
}

// Name is the policy type (SELINUXTYPE) LoadPolicy found; "" for a policy
// from LoadFileContexts.
func (p *Policy) Name() string { return p.name }

// Checksum is the SHA-256 (hex) of the binary policy LoadPolicy found, as
// libostree's ostree_sepolicy_get_csum; "" for LoadFileContexts.
func (p *Policy) Checksum() string { return p.checksum }

// LoadFileContexts reads the file contexts at path in fsys the way
// libselinux's file backend reads a file_contexts it is given: the base
// file (required), path.homedirs and path.local (each optional) for
// specifications, path.subs_dist and path.subs (optional) for path
// equivalences. Only the text files are read: the compiled .bin files
// libselinux may prefer are generated from them.
func LoadFileContexts(fsys fs.FS, path string) (*Policy, error) {
	p := &Policy{}
	var specs, exact []spec
	for _, suffix := range []string{"", suffixHomedirs, suffixLocal} {
		data, err := readPolicyFile(fsys, path+suffix, ErrInvalidPolicy)
		if errors.Is(err, fs.ErrNotExist) {
			if suffix == "" {
				return nil, fmt.Errorf("%w: %s: %w", ErrPolicyNotFound, path, err)
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		// libselinux sorts once, moving specifications without
		// meta-characters behind the others, keeping load order within
		// each group.
		if err := parseFileContexts(path+suffix, data, func(s spec, hasMeta bool) {
			if hasMeta {
				specs = append(specs, s)
			} else {
				exact = append(exact, s)
			}
		}); err != nil {
			return nil, err
		}
	}
	p.specs = append(specs, exact...)
	for id, s := range p.specs {
		p.index.add(s.prefix, int32(id))
	}
	for _, sub := range []struct {
		suffix string
		list   *[]equivalence
	}{{suffixSubsDist, &p.distSubs}, {suffixSubs, &p.subs}} {
		data, err := readPolicyFile(fsys, path+sub.suffix, ErrInvalidPolicy)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		*sub.list = parseEquivalences(data)
	}
	return p, nil
}

// readPolicyFile reads a policy file, at most maxPolicyFile bytes. A
// missing file is an error wrapping fs.ErrNotExist only, for the caller to
// judge; any other failure wraps sentinel.
func readPolicyFile(fsys fs.FS, name string, sentinel error) ([]byte, error) {
	f, err := fsys.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", sentinel, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", sentinel, name, err)
	}
	if len(data) > maxPolicyFile {
		return nil, fmt.Errorf("%w: %s is over %d bytes", sentinel, name, maxPolicyFile)
	}
	return data, nil
}

// parseFileContexts parses specification lines as libselinux's
// read_spec_entries and process_line do, handing each to add.
func parseFileContexts(name string, data []byte, add func(s spec, hasMeta bool)) error {
	for lineno := 1; len(data) > 0; lineno++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		// libselinux handles the line as a C string.
		if i := bytes.IndexByte(line, 0); i >= 0 {
			line = line[:i]
		}
		s, hasMeta, ok, err := parseSpecLine(string(line))
		if err != nil {
			return &SyntaxError{File: name, Line: lineno, Err: err}
		}
		if ok {
			add(s, hasMeta)
		}
	}
	return nil
}

// parseSpecLine parses "regex [type] context"; ok is false for a blank or
// comment line. Fields after the third are ignored, as libselinux does.
func parseSpecLine(line string) (s spec, hasMeta, ok bool, err error) {
	fields := splitFields(line, 3)
	if len(fields) == 0 || fields[0][0] == '#' {
		return spec{}, false, false, nil
	}
	for _, f := range fields {
		for i := 0; i < len(f); i++ {
			if f[i] >= 0x80 {
				return spec{}, false, false, fmt.Errorf("%w: non-ASCII character in %q", ErrSyntax, f)
			}
		}
	}
	var regex, typ, context string
	switch len(fields) {
	case 1:
		return spec{}, false, false, fmt.Errorf("%w: missing fields", ErrSyntax)
	case 2:
		regex, context = fields[0], fields[1]
	default:
		regex, typ, context = fields[0], fields[1], fields[2]
		mode, known := fileTypes[typ]
		if !known {
			return spec{}, false, false, fmt.Errorf("%w: invalid file type %q", ErrSyntax, typ)
		}
		s.mode = mode
	}
	pt, err := parsePattern(regex)
	if err != nil {
		return spec{}, false, false, err
	}
	s.context = context
	s.stem = specStem(regex)
	prefix, whole := pt.literalPrefix()
	s.prefix = prefix
	if !whole {
		if s.nfa = buildBitNFA(pt); s.nfa == nil {
			if s.re, err = pt.compile(regex); err != nil {
				return spec{}, false, false, err
			}
		}
	}
	return s, hasMetaChars(regex), true, nil
}

// isCSpaceRune is C's isspace (C locale) for the runes of a string; a
// byte of invalid UTF-8 comes as RuneError, no space either.
func isCSpaceRune(r rune) bool { return r < 0x80 && isSpace(byte(r)) }

// splitFields returns up to n fields of line separated by C whitespace.
func splitFields(line string, n int) []string {
	var fields []string
	for len(fields) < n {
		line = strings.TrimLeftFunc(line, isCSpaceRune)
		if line == "" {
			break
		}
		end := strings.IndexFunc(line, isCSpaceRune)
		if end < 0 {
			end = len(line)
		}
		fields = append(fields, line[:end])
		line = line[end:]
	}
	return fields
}

// metaChars are the characters libselinux takes as making a specification
// a regular expression rather than an exact path.
const metaChars = ".^$?*+|[({"

// hasMetaChars is libselinux's spec_hasMetaChars: whether regex has a
// meta-character, a backslash hiding the character after it.
func hasMetaChars(regex string) bool {
	for i := 0; i < len(regex); i++ {
		switch {
		case regex[i] == '\\':
			i++
		case strings.IndexByte(metaChars, regex[i]) >= 0:
			return true
		}
	}
	return false
}

// specStem is libselinux's get_stem_from_spec: the text before the first
// "/" after the first character, if that holds no meta-character.
func specStem(regex string) string {
	end := strings.IndexByte(regex[1:], '/')
	if end < 0 {
		return ""
	}
	stem := regex[:end+1]
	if strings.ContainsAny(stem, metaChars) {
		return ""
	}
	return stem
}

// pathStem is libselinux's get_stem_from_file_name for a lookup key.
func pathStem(key string) string {
	end := strings.IndexByte(key[1:], '/')
	if end < 0 {
		return ""
	}
	return key[:end+1]
}

// parseEquivalences parses a .subs or .subs_dist file as libselinux's
// selabel_subs_init does, returning the equivalences in the order they
// are tried: the last line first.
func parseEquivalences(data []byte) []equivalence {
	var list []equivalence
	for len(data) > 0 {
		// fgets into a 1024-byte buffer less one: a longer line is read
		// as several.
		n := bytes.IndexByte(data, '\n') + 1
		if n == 0 || n > 1022 {
			n = min(len(data), 1022)
		}
		record := data[:n]
		data = data[n:]
		if i := bytes.IndexByte(record, 0); i >= 0 {
			record = record[:i]
		}
		line := string(record)
		trimmed := strings.TrimLeftFunc(line, isCSpaceRune)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		fields := splitFields(trimmed, 2)
		if len(fields) < 2 {
			continue
		}
		list = append(list, equivalence{alias: fields[0], target: fields[1]})
	}
	slices.Reverse(list)
	return list
}
