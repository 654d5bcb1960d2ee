package selinux

import (
	"math/bits"
	"strings"
)

// Most file_contexts patterns are "^" + a plain regular expression + "$":
// literals, sets, groups and repetitions, no assertion inside. For those,
// a position automaton (Glushkov's) of up to 64 positions, simulated with
// one bit a position, matches in one pass over the path at a few
// nanoseconds a byte, and costs next to nothing to build (Go's regexp
// backtracks over "(.*/)?"-style patterns for microseconds a path). The
// leading literal is compared as a string and takes no position. The rest
// of the patterns go through Go's regexp.

// maxPositions is how many positions fit the bit set.
const maxPositions = 64

// bitNFA is a position automaton: a position is one byte-matching
// element of the pattern; a set bit means "just matched that element".
type bitNFA struct {
	lead     string      // the leading literal bytes
	byteMask [256]uint64 // positions whose element matches the byte
	follow   []uint64    // positions that may come right after each one
	first    uint64      // positions that may come first
	last     uint64      // positions that may come last
	nullable bool        // the part after lead may match nothing
	// endAnchored: the pattern ends with PCRE2's "$" (end, or before a
	// final newline); otherwise a match may end anywhere.
	endAnchored bool
}

// fragment is the position summary of a sub-pattern.
type fragment struct {
	first, last uint64
	nullable    bool
}

// buildBitNFA returns the automaton of a pattern of the plain shape, or
// nil.
func buildBitNFA(pt *pattern) *bitNFA {
	if len(pt.alts) != 1 {
		return nil
	}
	seq := pt.alts[0]
	for len(seq) > 0 && seq[0].kind == nodeBeginText {
		seq = seq[1:]
	}
	m := &bitNFA{}
	var lead strings.Builder
	for len(seq) > 0 && seq[0].kind == nodeLiteral {
		lead.WriteByte(seq[0].b)
		seq = seq[1:]
	}
	m.lead = lead.String()
	if len(seq) > 0 && seq[len(seq)-1].kind == nodeEndAlternative {
		m.endAnchored = true
		seq = seq[:len(seq)-1]
	}
	f, ok := m.sequence(seq)
	if !ok {
		return nil
	}
	m.first, m.last, m.nullable = f.first, f.last, f.nullable
	return m
}

// sequence adds the positions of seq; false if seq is not plain or has
// too many positions.
func (m *bitNFA) sequence(seq []*node) (fragment, bool) {
	f := fragment{nullable: true}
	for _, nd := range seq {
		g, ok := m.element(nd)
		if !ok {
			return f, false
		}
		f = m.concat(f, g)
	}
	return f, true
}

func (m *bitNFA) element(nd *node) (fragment, bool) {
	switch nd.kind {
	case nodeLiteral:
		var set byteSet
		set.add(nd.b)
		return m.position(&set)
	case nodeSet:
		return m.position(&nd.set)
	case nodeGroup:
		var f fragment
		for _, alt := range nd.alts {
			g, ok := m.sequence(alt)
			if !ok {
				return f, false
			}
			f = fragment{f.first | g.first, f.last | g.last, f.nullable || g.nullable}
		}
		return f, true
	case nodeRepeat:
		// Unrolled: min copies, then a loop or max-min optional copies.
		f := fragment{nullable: true}
		for i := 0; i < nd.min || i < nd.max || nd.max < 0 && i == nd.min; i++ {
			g, ok := m.element(nd.sub)
			if !ok {
				return f, false
			}
			if i >= nd.min {
				g.nullable = true
				if nd.max < 0 {
					m.link(g.last, g.first)
				}
			}
			f = m.concat(f, g)
		}
		return f, true
	}
	return fragment{}, false // an assertion
}

// position adds a position matching the bytes of set.
func (m *bitNFA) position(set *byteSet) (fragment, bool) {
	p := len(m.follow)
	if p == maxPositions {
		return fragment{}, false
	}
	m.follow = append(m.follow, 0)
	for b := range 256 {
		if set.has(byte(b)) {
			m.byteMask[b] |= 1 << p
		}
	}
	return fragment{first: 1 << p, last: 1 << p}, true
}

// link lets every position of from be followed by every position of to.
func (m *bitNFA) link(from, to uint64) {
	for ; from != 0; from &= from - 1 {
		m.follow[bits.TrailingZeros64(from)] |= to
	}
}

func (m *bitNFA) concat(a, b fragment) fragment {
	m.link(a.last, b.first)
	f := fragment{first: a.first, last: b.last, nullable: a.nullable && b.nullable}
	if a.nullable {
		f.first |= b.first
	}
	if b.nullable {
		f.last |= a.last
	}
	return f
}

// match reports whether PCRE2 finds a match of "^pattern$" in path.
func (m *bitNFA) match(path string) bool {
	if !strings.HasPrefix(path, m.lead) {
		return false
	}
	in := path[len(m.lead):]
	if m.nullable && (!m.endAnchored || in == "" || in == "\n") {
		return true
	}
	if in == "" {
		return false
	}
	active := m.first & m.byteMask[in[0]]
	for i := 1; i < len(in); i++ {
		if active == 0 {
			return false
		}
		if active&m.last != 0 && (!m.endAnchored || i == len(in)-1 && in[i] == '\n') {
			return true
		}
		var next uint64
		for rest := active; rest != 0; rest &= rest - 1 {
			next |= m.follow[bits.TrailingZeros64(rest)]
		}
		active = next & m.byteMask[in[i]]
	}
	return active&m.last != 0
}
