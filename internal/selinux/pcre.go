package selinux

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// libselinux compiles each file_contexts pattern with PCRE2 as the text
// "^" + pattern + "$", in byte mode (no UTF), with PCRE2_DOTALL and no
// other option, and searches with it (unanchored). The anchors are only
// glued on: in "^a|b$" the "^" binds to the first alternative and the "$"
// to the last, so "/a|/b" matches every path that starts with "/a" or
// ends with "/b"; a pattern ending in a backslash escapes the "$". This file
// parses the part of that dialect whose meaning Go's regexp can express
// exactly, and refuses the rest with ErrUnsupportedPattern rather than
// guess. Go's regexp works on UTF-8 runes where PCRE2 works on bytes, so the
// translation works on bytes too: every byte 0x80-0xFF is matched as the
// private-use rune highRune|b (see matchInput), so that "." or "[^/]" eats
// exactly one byte of a path, and nothing outside ASCII folds or classifies
// as a letter, digit or space (PCRE2's default tables are the C locale's).

// highRune is where bytes 0x80-0xFF go in the rune space the compiled Go
// regexps see: private-use runes, which no case folding or class touches.
const highRune = 0xE000

// The largest counted repetitions Go's regexp and PCRE2 accept.
const (
	maxGoRepeat   = 1000
	maxPCRERepeat = 65535
)

// byteSet is a set of byte values.
type byteSet [4]uint64

func (s *byteSet) add(b byte)      { s[b>>6] |= 1 << (b & 63) }
func (s *byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *byteSet) union(o *byteSet) {
	s[0], s[1], s[2], s[3] = s[0]|o[0], s[1]|o[1], s[2]|o[2], s[3]|o[3]
}
func (s *byteSet) negate() { s[0], s[1], s[2], s[3] = ^s[0], ^s[1], ^s[2], ^s[3] }
func (s *byteSet) addRange(lo, hi int) {
	for c := lo; c <= hi; c++ {
		s.add(byte(c))
	}
}

// setOf returns the set of bytes for which in returns true.
func setOf(in func(c byte) bool) byteSet {
	var s byteSet
	for c := 0; c < 256; c++ {
		if in(byte(c)) {
			s.add(byte(c))
		}
	}
	return s
}

// The C locale's character classes, which PCRE2's built-in tables follow.
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isUpper(c byte) bool  { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool  { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool  { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool  { return isAlpha(c) || isDigit(c) }
func isWord(c byte) bool   { return isAlnum(c) || c == '_' }
func isSpace(c byte) bool  { return c == ' ' || '\t' <= c && c <= '\r' } // \t \n \v \f \r
func isXDigit(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
func isGraph(c byte) bool  { return '!' <= c && c <= '~' }
func isPunct(c byte) bool  { return isGraph(c) && !isAlnum(c) }

// posixClasses are the [:name:] classes PCRE2 knows, in the C locale.
var posixClasses = map[string]func(byte) bool{
	"alnum":  isAlnum,
	"alpha":  isAlpha,
	"ascii":  func(c byte) bool { return c < 0x80 },
	"blank":  func(c byte) bool { return c == ' ' || c == '\t' },
	"cntrl":  func(c byte) bool { return c < 0x20 || c == 0x7f },
	"digit":  isDigit,
	"graph":  isGraph,
	"lower":  isLower,
	"print":  func(c byte) bool { return ' ' <= c && c <= '~' },
	"punct":  isPunct,
	"space":  isSpace,
	"upper":  isUpper,
	"word":   isWord,
	"xdigit": isXDigit,
}

// classEscapes are \d \s \w and their negations.
var classEscapes = map[byte]func(byte) bool{
	'd': isDigit, 's': isSpace, 'w': isWord,
	'D': func(c byte) bool { return !isDigit(c) },
	'S': func(c byte) bool { return !isSpace(c) },
	'W': func(c byte) bool { return !isWord(c) },
}

// charEscapes are the escapes that stand for one control character.
var charEscapes = map[byte]byte{'a': 0x07, 'e': 0x1b, 'f': 0x0c, 'n': '\n', 'r': '\r', 't': '\t'}

type nodeKind uint8

const (
	nodeLiteral         nodeKind = iota // one byte, b
	nodeSet                             // one byte of set
	nodeGroup                           // one of alts
	nodeRepeat                          // sub, min to max times (max < 0: unbounded)
	nodeBeginText                       // ^ or \A
	nodeEndText                         // \z
	nodeEndAlternative                  // $ or \Z ending a top-level alternative
	nodeWordBoundary                    // \b
	nodeNotWordBoundary                 // \B
)

// node is a parsed pattern element.
type node struct {
	kind     nodeKind
	b        byte
	set      byteSet
	alts     [][]*node
	sub      *node
	min, max int
}

// pattern is a parsed file_contexts regular expression.
type pattern struct {
	alts [][]*node
}

// patternParser parses one pattern; pos indexes src.
type patternParser struct {
	src string
	pos int
	// unsupported is the first construct found that Go cannot express,
	// where parsing can go on: a syntax error further on is reported
	// instead, as PCRE2 would refuse the pattern anyway.
	unsupported error
}

// parsePattern parses "^" + src + "$" as libselinux's PCRE2 compiles it.
// Errors wrap ErrSyntax (PCRE2 refuses it too) or ErrUnsupportedPattern
// (PCRE2 accepts it, Go's regexp cannot express its meaning exactly).
func parsePattern(src string) (*pattern, error) {
	p := &patternParser{src: "^" + src + "$"}
	alts, err := p.alternation(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.src) { // a ")" with no "("
		return nil, p.errorf(ErrSyntax, "unmatched )")
	}
	if p.unsupported != nil {
		return nil, p.unsupported
	}
	return &pattern{alts: alts}, nil
}

// unsupportedf records an unsupported construct at p.pos and lets the
// parse go on.
func (p *patternParser) unsupportedf(format string, args ...any) {
	if p.unsupported == nil {
		p.unsupported = p.errorf(ErrUnsupportedPattern, format, args...)
	}
}

// errorf reports a problem at p.pos, an offset in the anchored text.
func (p *patternParser) errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %q at offset %d: %s", sentinel, p.src, p.pos, fmt.Sprintf(format, args...))
}

func (p *patternParser) peek() (byte, bool) {
	if p.pos < len(p.src) {
		return p.src[p.pos], true
	}
	return 0, false
}

// alternation parses alternatives up to an unmatched ")" or the end.
func (p *patternParser) alternation(depth int) ([][]*node, error) {
	var alts [][]*node
	for {
		seq, err := p.sequence(depth)
		if err != nil {
			return nil, err
		}
		alts = append(alts, seq)
		if c, ok := p.peek(); !ok || c != '|' {
			return alts, nil
		}
		p.pos++
	}
}

// sequence parses quantified atoms up to "|", ")" or the end.
func (p *patternParser) sequence(depth int) ([]*node, error) {
	var seq []*node
	for {
		c, ok := p.peek()
		if !ok || c == '|' || c == ')' {
			return seq, nil
		}
		if _, _, n, ok := p.quantifierAt(p.pos); ok {
			// PCRE2 refuses a quantifier with nothing before it; after a
			// comment or \E it would repeat what precedes those.
			sentinel := ErrSyntax
			if len(seq) > 0 {
				sentinel = ErrUnsupportedPattern
			}
			return nil, p.errorf(sentinel, "quantifier %q follows nothing repeatable", p.src[p.pos:p.pos+n])
		}
		atoms, err := p.atom(depth)
		if err != nil {
			return nil, err
		}
		if len(atoms) == 0 { // a comment, \E, an empty \Q\E
			continue
		}
		last := atoms[len(atoms)-1]
		min, max, n, ok := p.quantifierAt(p.pos)
		if !ok {
			seq = append(seq, atoms...)
			continue
		}
		if last.kind >= nodeBeginText {
			p.unsupportedf("quantified assertion")
		}
		p.pos += n
		if c, ok := p.peek(); ok && c == '+' {
			p.unsupportedf("possessive quantifier")
			p.pos++
		} else if ok && c == '?' {
			p.pos++ // lazy: it changes which match is found, not whether one is
		}
		if _, _, n, ok := p.quantifierAt(p.pos); ok {
			return nil, p.errorf(ErrUnsupportedPattern, "quantifier %q after a quantifier", p.src[p.pos:p.pos+n])
		}
		switch {
		case max >= 0 && min > max:
			return nil, p.errorf(ErrSyntax, "repetition counts out of order")
		case max > maxPCRERepeat || min > maxPCRERepeat:
			return nil, p.errorf(ErrSyntax, "repetition count above %d", maxPCRERepeat)
		case max > maxGoRepeat || min > maxGoRepeat:
			p.unsupportedf("repetition count above %d", maxGoRepeat)
		}
		seq = append(seq, atoms[:len(atoms)-1]...)
		seq = append(seq, &node{kind: nodeRepeat, sub: last, min: min, max: max})
	}
}

// quantifierAt reports the quantifier starting at i, if any: its bounds
// and length. A "{" that does not form {n}, {n,} or {n,m} is a literal in
// PCRE2 (10.42), so it is no quantifier here either.
func (p *patternParser) quantifierAt(i int) (min, max, n int, ok bool) {
	if i >= len(p.src) {
		return 0, 0, 0, false
	}
	switch p.src[i] {
	case '*':
		return 0, -1, 1, true
	case '+':
		return 1, -1, 1, true
	case '?':
		return 0, 1, 1, true
	case '{':
	default:
		return 0, 0, 0, false
	}
	end := strings.IndexByte(p.src[i:], '}')
	if end < 0 {
		return 0, 0, 0, false
	}
	lo, hi, comma := strings.Cut(p.src[i+1:i+end], ",")
	if !allDigits(lo) || comma && hi != "" && !allDigits(hi) {
		return 0, 0, 0, false
	}
	min = atoiCapped(lo)
	max = min
	if comma {
		max = -1
		if hi != "" {
			max = atoiCapped(hi)
		}
	}
	return min, max, end + 1, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// atoiCapped parses digits, saturating far above any count we accept.
func atoiCapped(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n > 1<<20 {
		return 1 << 20
	}
	return n
}

// atom parses one item; \Q...\E yields several literals, a comment none.
func (p *patternParser) atom(depth int) ([]*node, error) {
	c := p.src[p.pos]
	switch c {
	case '\\':
		return p.escape(depth)
	case '.':
		p.pos++
		var all byteSet
		all.negate()
		return []*node{{kind: nodeSet, set: all}}, nil
	case '[':
		set, err := p.class()
		if err != nil {
			return nil, err
		}
		return []*node{{kind: nodeSet, set: set}}, nil
	case '(':
		return p.group(depth)
	case '^':
		p.pos++
		return []*node{{kind: nodeBeginText}}, nil
	case '$':
		return p.endOfSubject(depth)
	}
	p.pos++
	return []*node{{kind: nodeLiteral, b: c}}, nil
}

// group parses "(...)" and the (?...) forms that only group.
func (p *patternParser) group(depth int) ([]*node, error) {
	start := p.pos
	p.pos++
	rest := p.src[p.pos:]
	switch {
	case strings.HasPrefix(rest, "*"):
		return nil, p.errorf(ErrUnsupportedPattern, "(* verb or quantifier")
	case strings.HasPrefix(rest, "?#"):
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return nil, p.errorf(ErrSyntax, "comment not terminated")
		}
		p.pos += end + 1
		return nil, nil
	case strings.HasPrefix(rest, "?:"), strings.HasPrefix(rest, "?|"):
		p.pos += 2
	case strings.HasPrefix(rest, "?<") && !strings.HasPrefix(rest, "?<=") && !strings.HasPrefix(rest, "?<!"),
		strings.HasPrefix(rest, "?P<"), strings.HasPrefix(rest, "?'"):
		open := strings.IndexAny(rest, "<'")
		close := byte('>')
		if rest[open] == '\'' {
			close = '\''
		}
		end := strings.IndexByte(rest[open+1:], close)
		if end < 0 || !validGroupName(rest[open+1:open+1+end]) {
			return nil, p.errorf(ErrSyntax, "bad group name")
		}
		p.pos += open + 1 + end + 1
	case strings.HasPrefix(rest, "?"):
		return nil, p.errorf(ErrUnsupportedPattern, "group construct (%s", truncate(rest, 4))
	}
	alts, err := p.alternation(depth + 1)
	if err != nil {
		return nil, err
	}
	if c, ok := p.peek(); !ok || c != ')' {
		p.pos = start
		return nil, p.errorf(ErrSyntax, "missing )")
	}
	p.pos++
	return []*node{{kind: nodeGroup, alts: alts}}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// validGroupName is PCRE2's rule: a word of at most 32 characters not
// starting with a digit.
func validGroupName(name string) bool {
	if name == "" || len(name) > 32 || isDigit(name[0]) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isWord(name[i]) {
			return false
		}
	}
	return true
}

// endOfSubject parses "$" or "\Z" (and any run of them): PCRE2's "end, or
// before a newline that ends the subject". Go has no such assertion, but
// where nothing follows in a top-level alternative, consuming an optional
// final newline and asserting the end is the same test.
func (p *patternParser) endOfSubject(depth int) ([]*node, error) {
	end := p.pos
	for end < len(p.src) {
		if p.src[end] == '$' {
			end++
		} else if strings.HasPrefix(p.src[end:], `\Z`) {
			end += 2
		} else {
			break
		}
	}
	if depth > 0 || end < len(p.src) && p.src[end] != '|' {
		p.unsupportedf(`$ or \Z with more pattern after it`)
		end = p.pos + 1
		if p.src[p.pos] == '\\' {
			end++
		}
	}
	p.pos = end
	return []*node{{kind: nodeEndAlternative}}, nil
}

// escape parses a backslash sequence outside a class.
func (p *patternParser) escape(depth int) ([]*node, error) {
	p.pos++ // the backslash
	c, ok := p.peek()
	if !ok {
		return nil, p.errorf(ErrSyntax, `\ at end of pattern`)
	}
	switch c {
	case 'Q':
		p.pos++
		end := strings.Index(p.src[p.pos:], `\E`)
		quoted := p.src[p.pos:]
		if end >= 0 {
			quoted = p.src[p.pos : p.pos+end]
			p.pos += end + 2
		} else {
			p.pos = len(p.src)
		}
		nodes := make([]*node, len(quoted))
		for i := range len(quoted) {
			nodes[i] = &node{kind: nodeLiteral, b: quoted[i]}
		}
		return nodes, nil
	case 'E':
		p.pos++
		return nil, nil
	case 'A':
		p.pos++
		return []*node{{kind: nodeBeginText}}, nil
	case 'z':
		p.pos++
		return []*node{{kind: nodeEndText}}, nil
	case 'Z':
		p.pos-- // back to the backslash
		return p.endOfSubject(depth)
	case 'b':
		p.pos++
		return []*node{{kind: nodeWordBoundary}}, nil
	case 'B':
		p.pos++
		return []*node{{kind: nodeNotWordBoundary}}, nil
	}
	if in, ok := classEscapes[c]; ok {
		p.pos++
		return []*node{{kind: nodeSet, set: setOf(in)}}, nil
	}
	b, err := p.charEscape()
	if err != nil {
		return nil, err
	}
	return []*node{{kind: nodeLiteral, b: b}}, nil
}

// charEscape parses the escapes that stand for one byte (p.pos is just
// past the backslash), refusing the others.
func (p *patternParser) charEscape() (byte, error) {
	c := p.src[p.pos]
	p.pos++
	if !isAlnum(c) {
		return c, nil
	}
	if b, ok := charEscapes[c]; ok {
		return b, nil
	}
	switch c {
	case 'x':
		if strings.HasPrefix(p.src[p.pos:], "{") {
			return p.bracedNumber(16, isXDigit)
		}
		n := 0
		for n < 2 && p.pos+n < len(p.src) && isXDigit(p.src[p.pos+n]) {
			n++
		}
		v, _ := strconv.ParseUint("0"+p.src[p.pos:p.pos+n], 16, 8)
		p.pos += n
		return byte(v), nil
	case 'o':
		if !strings.HasPrefix(p.src[p.pos:], "{") {
			return 0, p.errorf(ErrSyntax, `\o not followed by {`)
		}
		return p.bracedNumber(8, isOctal)
	case '0':
		n := 0
		for n < 2 && p.pos+n < len(p.src) && isOctal(p.src[p.pos+n]) {
			n++
		}
		v, _ := strconv.ParseUint("0"+p.src[p.pos:p.pos+n], 8, 8)
		p.pos += n
		return byte(v), nil
	case '1', '2', '3', '4', '5', '6', '7', '8', '9', 'g', 'k':
		return 0, p.errorf(ErrUnsupportedPattern, `backreference or octal \%c`, c)
	case 'c', 'C', 'G', 'h', 'H', 'K', 'N', 'p', 'P', 'R', 'v', 'V', 'X':
		return 0, p.errorf(ErrUnsupportedPattern, `escape \%c`, c)
	}
	return 0, p.errorf(ErrSyntax, `unrecognised escape \%c`, c)
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// bracedNumber parses "{digits}" after \x or \o: one byte value.
func (p *patternParser) bracedNumber(base int, digit func(byte) bool) (byte, error) {
	end := strings.IndexByte(p.src[p.pos:], '}')
	if end < 2 {
		return 0, p.errorf(ErrSyntax, "bad braced character code")
	}
	digits := p.src[p.pos+1 : p.pos+end]
	for i := 0; i < len(digits); i++ {
		if !digit(digits[i]) {
			return 0, p.errorf(ErrSyntax, "bad braced character code")
		}
	}
	v, err := strconv.ParseUint(digits, base, 8)
	if err != nil {
		return 0, p.errorf(ErrSyntax, "character code above 0xff in byte mode")
	}
	p.pos += end + 1
	return byte(v), nil
}

// class parses a bracket expression.
func (p *patternParser) class() (byteSet, error) {
	start := p.pos
	p.pos++ // [
	negated := false
	if c, ok := p.peek(); ok && c == '^' {
		negated = true
		p.pos++
	}
	var set byteSet
	first := true
	for {
		c, ok := p.peek()
		if !ok {
			p.pos = start
			return set, p.errorf(ErrSyntax, "missing ]")
		}
		if c == ']' && !first {
			p.pos++
			break
		}
		first = false
		if c == '[' {
			if posix, ok, err := p.posixClass(); err != nil {
				return set, err
			} else if ok {
				set.union(&posix)
				continue
			}
		}
		lo, loSet, err := p.classAtom()
		if err != nil {
			return set, err
		}
		if strings.HasPrefix(p.src[p.pos:], "-") && !strings.HasPrefix(p.src[p.pos:], "-]") && p.pos+1 < len(p.src) {
			if loSet != nil {
				return set, p.errorf(ErrUnsupportedPattern, "range from a class escape")
			}
			p.pos++ // -
			if p.src[p.pos] == '[' && len(p.src) > p.pos+1 && strings.ContainsRune(":.=", rune(p.src[p.pos+1])) {
				return set, p.errorf(ErrUnsupportedPattern, "range to a POSIX class")
			}
			hi, hiSet, err := p.classAtom()
			if err != nil {
				return set, err
			}
			if hiSet != nil {
				return set, p.errorf(ErrUnsupportedPattern, "range to a class escape")
			}
			if hi < lo {
				return set, p.errorf(ErrSyntax, "range out of order in class")
			}
			set.addRange(int(lo), int(hi))
			continue
		}
		if loSet != nil {
			set.union(loSet)
		} else {
			set.add(lo)
		}
	}
	if negated {
		set.negate()
	}
	return set, nil
}

// posixClass parses "[:name:]" or "[:^name:]" at p.pos. Any other "[:",
// "[." or "[=" is refused: PCRE2's rules for when those start a POSIX
// construct are subtle, and no policy needs them.
func (p *patternParser) posixClass() (byteSet, bool, error) {
	rest := p.src[p.pos:]
	if len(rest) < 2 || !strings.ContainsRune(":.=", rune(rest[1])) {
		return byteSet{}, false, nil
	}
	if rest[1] == ':' {
		if end := strings.Index(rest[2:], ":]"); end >= 0 {
			name := rest[2 : 2+end]
			negated := strings.HasPrefix(name, "^")
			if in, ok := posixClasses[strings.TrimPrefix(name, "^")]; ok {
				set := setOf(in)
				if negated {
					set.negate()
				}
				p.pos += 2 + end + 2
				return set, true, nil
			}
		}
	}
	return byteSet{}, false, p.errorf(ErrUnsupportedPattern, "POSIX bracket construct %s", truncate(rest, 2))
}

// classAtom parses one class member: a byte, or a set for \d-style escapes.
func (p *patternParser) classAtom() (byte, *byteSet, error) {
	c := p.src[p.pos]
	if c != '\\' {
		p.pos++
		return c, nil, nil
	}
	p.pos++
	e, ok := p.peek()
	if !ok {
		return 0, nil, p.errorf(ErrSyntax, `\ at end of pattern`)
	}
	if in, ok := classEscapes[e]; ok {
		p.pos++
		set := setOf(in)
		return 0, &set, nil
	}
	switch e {
	case 'b':
		p.pos++
		return 0x08, nil, nil // backspace, inside a class
	case 'Q', 'E':
		return 0, nil, p.errorf(ErrUnsupportedPattern, `\%c inside a class`, e)
	}
	b, err := p.charEscape()
	return b, nil, err
}

// goSyntax renders the pattern as a Go regexp that finds a match in
// exactly the (matchInput-mapped) paths PCRE2 finds one in.
func (pt *pattern) goSyntax() string {
	var sb strings.Builder
	writeAlts(&sb, pt.alts)
	return sb.String()
}

func writeAlts(sb *strings.Builder, alts [][]*node) {
	for i, seq := range alts {
		if i > 0 {
			sb.WriteByte('|')
		}
		for _, n := range seq {
			writeNode(sb, n)
		}
	}
}

func writeNode(sb *strings.Builder, n *node) {
	switch n.kind {
	case nodeLiteral:
		writeByte(sb, n.b)
	case nodeSet:
		writeSet(sb, &n.set)
	case nodeGroup:
		sb.WriteString("(?:")
		writeAlts(sb, n.alts)
		sb.WriteByte(')')
	case nodeRepeat:
		sb.WriteString("(?:")
		writeNode(sb, n.sub)
		sb.WriteByte(')')
		switch {
		case n.min == 0 && n.max < 0:
			sb.WriteByte('*')
		case n.min == 1 && n.max < 0:
			sb.WriteByte('+')
		case n.max < 0:
			fmt.Fprintf(sb, "{%d,}", n.min)
		default:
			fmt.Fprintf(sb, "{%d,%d}", n.min, n.max)
		}
	case nodeBeginText:
		sb.WriteString(`\A`)
	case nodeEndText:
		sb.WriteString(`\z`)
	case nodeEndAlternative:
		sb.WriteString(`\n?\z`)
	case nodeWordBoundary:
		sb.WriteString(`\b`)
	case nodeNotWordBoundary:
		sb.WriteString(`\B`)
	}
}

// runeOf is the rune a path byte becomes in matchInput.
func runeOf(b byte) rune {
	if b < 0x80 {
		return rune(b)
	}
	return highRune | rune(b)
}

func writeByte(sb *strings.Builder, b byte) {
	if isAlnum(b) || b == '/' || b == '_' || b == '-' {
		sb.WriteByte(b)
		return
	}
	fmt.Fprintf(sb, `\x{%x}`, runeOf(b))
}

// writeSet writes set as a Go class over the mapped runes. The runes of
// 0x7f and 0x80 are not adjacent, so ranges break there.
func writeSet(sb *strings.Builder, set *byteSet) {
	sb.WriteByte('[')
	empty := true
	for c := 0; c < 256; {
		if !set.has(byte(c)) {
			c++
			continue
		}
		lo := c
		for c < 256 && set.has(byte(c)) && (c == lo || c != 0x80) {
			c++
		}
		fmt.Fprintf(sb, `\x{%x}-\x{%x}`, runeOf(byte(lo)), runeOf(byte(c-1)))
		empty = false
	}
	if empty { // matches nothing
		sb.WriteString(`^\x00-\x{10FFFF}`)
	}
	sb.WriteByte(']')
}

// literalPrefix returns bytes every path the pattern matches starts
// with, and whether it matches exactly that literal (or it followed by a
// newline, as PCRE2's "$" allows). Only a first alternative is anchored
// at the start, so a pattern of several has none.
func (pt *pattern) literalPrefix() (prefix string, exact bool) {
	if len(pt.alts) > 1 {
		return "", false
	}
	var sb strings.Builder
	exact = literalSeq(&sb, pt.alts[0], true)
	return sb.String(), exact
}

// literalSeq writes the literal bytes every match of seq starts with and
// reports whether seq is exactly those: inside a group, nothing more; at
// the top level, nothing more but the end.
func literalSeq(sb *strings.Builder, seq []*node, top bool) bool {
	for i, n := range seq {
		switch {
		case n.kind == nodeLiteral:
			sb.WriteByte(n.b)
		case top && n.kind == nodeBeginText && sb.Len() == 0:
			// The first "^" pins the match to the start of the path; it
			// and any right after it hold there.
		case top && n.kind == nodeEndAlternative && i == len(seq)-1:
			return true
		case n.kind == nodeGroup:
			if !groupPrefix(sb, n.alts) {
				return false
			}
		case n.kind == nodeRepeat && n.min > 0:
			literalSeq(sb, []*node{n.sub}, false)
			return false
		default:
			return false
		}
	}
	return !top
}

// groupPrefix writes the common literal prefix of a group's alternatives
// and reports whether they are all that same literal.
func groupPrefix(sb *strings.Builder, alts [][]*node) bool {
	var first strings.Builder
	whole := literalSeq(&first, alts[0], false)
	prefix := first.String()
	for _, seq := range alts[1:] {
		var other strings.Builder
		w := literalSeq(&other, seq, false)
		n := 0
		for n < len(prefix) && n < other.Len() && prefix[n] == other.String()[n] {
			n++
		}
		whole = whole && w && n == len(prefix) && n == other.Len()
		prefix = prefix[:n]
	}
	sb.WriteString(prefix)
	return whole
}

// compile turns a parsed pattern into a Go regexp; Go's own limits (for
// example on nested repetition) make a pattern unsupported.
func (pt *pattern) compile(src string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(pt.goSyntax())
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrUnsupportedPattern, src, err)
	}
	return re, nil
}

// matchInput maps a path to the text the compiled regexps match: bytes
// 0x80-0xFF become single private-use runes (see highRune).
func matchInput(path string) string {
	i := 0
	for i < len(path) && path[i] < 0x80 {
		i++
	}
	if i == len(path) {
		return path
	}
	var sb strings.Builder
	sb.Grow(len(path) + 2*(len(path)-i))
	sb.WriteString(path[:i])
	for ; i < len(path); i++ {
		sb.WriteRune(runeOf(path[i]))
	}
	return sb.String()
}
