package updatecachetest

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file writes tar streams the way the Rust tar crate (tar-rs), which
// ostree-ext uses, lays them out byte for byte: GNU headers with mtime 0
// and NUL-terminated octal fields, GNU long-name ('L') and long-link ('K')
// records for names over 100 bytes, PAX ('x') records in a UStar header
// without a name, and headers reused from one entry to the next (so a name
// field may hold leftovers of an earlier, longer name after its NUL).

// Offsets of the fields of a tar header block.
const (
	hdrName     = 0
	hdrMode     = 100
	hdrUID      = 108
	hdrGID      = 116
	hdrSize     = 124
	hdrMtime    = 136
	hdrChksum   = 148
	hdrType     = 156
	hdrLinkname = 157
	hdrMagic    = 257
	nameLen     = 100
	blockSize   = 512
)

// Entry types tar-rs writes here.
const (
	typeReg      = '0'
	typeLink     = '1'
	typeSymlink  = '2'
	typeDir      = '5'
	typePAX      = 'x'
	typeLongName = 'L'
	typeLongLink = 'K'
)

var errFieldTooLong = errors.New("value too long for its header field")

// tarHeader is one 512-byte header block being filled in.
type tarHeader [blockSize]byte

// newGNUHeader is tar-rs's Header::new_gnu: GNU magic and mtime 0.
func newGNUHeader() tarHeader {
	var h tarHeader
	copy(h[hdrMagic:], "ustar  \x00")
	h.setNumber(hdrMtime, 12, 0)
	return h
}

// setOctal writes v as zero-padded octal ending in a NUL, filling the field.
func (h *tarHeader) setOctal(off, size int, v uint64) {
	s := strconv.FormatUint(v, 8)
	field := h[off : off+size]
	field[size-1] = 0
	for i := size - 2; i >= 0; i-- {
		if j := len(s) - (size - 1 - i); j >= 0 {
			field[i] = s[j]
		} else {
			field[i] = '0'
		}
	}
}

// setNumber writes v in octal, or in base-256 when octal does not fit, as
// tar-rs does for ids, sizes and times.
func (h *tarHeader) setNumber(off, size int, v uint64) {
	if v >= 1<<33 || v >= 1<<21 && size == 8 {
		field := h[off : off+size]
		clear(field)
		for i := 0; i < 8; i++ {
			field[size-1-i] = byte(v >> (8 * i))
		}
		field[0] |= 0x80
		return
	}
	h.setOctal(off, size, v)
}

func (h *tarHeader) setMode(m uint32) { h.setOctal(hdrMode, 8, uint64(m)) }
func (h *tarHeader) setOwner(u, g uint32) {
	h.setNumber(hdrUID, 8, uint64(u))
	h.setNumber(hdrGID, 8, uint64(g))
}
func (h *tarHeader) setSize(n int64) { h.setNumber(hdrSize, 12, uint64(n)) }
func (h *tarHeader) setType(t byte)  { h[hdrType] = t }
func (h *tarHeader) typ() byte       { return h[hdrType] }
func (h *tarHeader) setCksum() {
	sum := uint64(0)
	for i, c := range h {
		if i >= hdrChksum && i < hdrChksum+8 {
			c = ' '
		}
		sum += uint64(c)
	}
	h.setOctal(hdrChksum, 8, sum)
}

// setPath writes a path into a name or linkname field as tar-rs does:
// component by component, each followed by a NUL while room is left, "."
// components dropped (unless the path is only "."), a trailing slash
// kept. When the path does not fit, the components written so far stay.
func (h *tarHeader) setPath(off int, p string, isLink bool) error {
	slot := h[off : off+nameLen]
	pos := 0
	put := func(b string) error {
		if strings.IndexByte(b, 0) >= 0 {
			return fmt.Errorf("%q holds a NUL", p)
		}
		if len(b) > len(slot)-pos {
			return errFieldTooLong
		}
		n := copy(slot[pos:], b)
		if pos+n < len(slot) {
			slot[pos+n] = 0
		}
		pos += n
		return nil
	}
	comps := pathComponents(p)
	if len(comps) == 0 {
		return fmt.Errorf("empty path %q", p)
	}
	needSlash := false
	for _, c := range comps {
		switch {
		case !isLink && c == "/":
			return fmt.Errorf("absolute path %q", p)
		case !isLink && c == "..":
			return fmt.Errorf("path %q has a \"..\"", p)
		case !isLink && c == "." && len(comps) > 1:
			continue
		}
		if needSlash {
			if err := put("/"); err != nil {
				return err
			}
		}
		if err := put(c); err != nil {
			return err
		}
		needSlash = c != "/"
	}
	if strings.HasSuffix(p, "/") {
		return put("/")
	}
	return nil
}

// pathComponents splits p as Rust's Path::components does: a leading "/"
// is a component of its own, a leading "." is kept, later "." and empty
// components are dropped.
func pathComponents(p string) []string {
	var comps []string
	if strings.HasPrefix(p, "/") {
		comps = append(comps, "/")
	}
	for i, c := range strings.Split(p, "/") {
		if c == "" || c == "." && (i > 0 || len(comps) > 0) {
			continue
		}
		comps = append(comps, c)
	}
	return comps
}

// tarRsWriter appends tar-rs-style entries to a buffer.
type tarRsWriter struct {
	buf bytes.Buffer
}

// write appends a header block (checksummed here) and its data, padded.
func (w *tarRsWriter) write(h *tarHeader, data []byte) {
	h.setCksum()
	w.buf.Write(h[:])
	w.buf.Write(data)
	if pad := len(data) % blockSize; pad != 0 {
		w.buf.Write(make([]byte, blockSize-pad))
	}
}

// longRecord writes a GNU long-name or long-link record for p.
func (w *tarRsWriter) longRecord(t byte, p string) {
	h := newGNUHeader()
	copy(h[hdrName:], "././@LongLink")
	h.setMode(0o644)
	h.setOwner(0, 0)
	h.setNumber(hdrMtime, 12, 0)
	h.setSize(int64(len(p) + 1))
	h.setType(t)
	w.write(&h, append([]byte(p), 0))
}

// setEntryPath is tar-rs's prepare_header_path: the name in the header,
// or a long-name record first and the name cut to 100 bytes (at a UTF-8
// boundary) in the header.
func (w *tarRsWriter) setEntryPath(h *tarHeader, p string) error {
	err := h.setPath(hdrName, p, false)
	if !errors.Is(err, errFieldTooLong) || len(p) < nameLen {
		return err
	}
	cut := p[:nameLen]
	for !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	// The truncated name keeps what the field can take of it.
	if err := h.setPath(hdrName, cut, false); err != nil && !errors.Is(err, errFieldTooLong) {
		return err
	}
	w.longRecord(typeLongName, p)
	return nil
}

// appendData is tar-rs's Builder::append_data.
func (w *tarRsWriter) appendData(h *tarHeader, p string, data []byte) error {
	if err := w.setEntryPath(h, p); err != nil {
		return err
	}
	w.write(h, data)
	return nil
}

// appendLink is tar-rs's Builder::append_link: a hard or symbolic link
// with a long-link record when the target does not fit.
func (w *tarRsWriter) appendLink(h *tarHeader, p, target string) error {
	if err := w.setEntryPath(h, p); err != nil {
		return err
	}
	if err := h.setPath(hdrLinkname, target, true); errors.Is(err, errFieldTooLong) && len(target) >= nameLen {
		w.longRecord(typeLongLink, target)
	} else if err != nil {
		return err
	}
	w.write(h, nil)
	return nil
}

// setLinkName is tar-rs's Header::set_link_name, which fails on a target
// over 100 bytes.
func (h *tarHeader) setLinkName(target string) error {
	return h.setPath(hdrLinkname, target, true)
}

// setLinkNameLiteral is tar-rs's Header::set_link_name_literal: the bytes
// as they are, NUL-terminated when shorter than the field.
func (h *tarHeader) setLinkNameLiteral(target string) error {
	if len(target) > nameLen || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("symlink target %q: %w", target, errFieldTooLong)
	}
	n := copy(h[hdrLinkname:hdrLinkname+nameLen], target)
	if n < nameLen {
		h[hdrLinkname+n] = 0
	}
	return nil
}

// appendPAX writes PAX records in a UStar 'x' header without a name, as
// tar-rs's append_pax_extensions does; no records, no header.
func (w *tarRsWriter) appendPAX(records [][2]string) {
	var data []byte
	for _, r := range records {
		rest := 3 + len(r[0]) + len(r[1])
		lenLen, maxLen := 1, 10
		for rest+lenLen >= maxLen {
			lenLen++
			maxLen *= 10
		}
		data = fmt.Appendf(data, "%d %s=", rest+lenLen, r[0])
		data = append(data, r[1]...)
		data = append(data, '\n')
	}
	if len(data) == 0 {
		return
	}
	var h tarHeader
	copy(h[hdrMagic:], "ustar\x0000")
	h.setNumber(hdrMtime, 12, 0)
	h.setSize(int64(len(data)))
	h.setType(typePAX)
	w.write(&h, data)
}

// finish writes the two zero blocks that end an archive.
func (w *tarRsWriter) finish() []byte {
	w.buf.Write(make([]byte, 2*blockSize))
	return w.buf.Bytes()
}
