package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// escapeText makes text from an image or a registry (a version label, a
// policy's reason, an error body) safe to print on a terminal: control
// characters (C0, DEL, C1: escape sequences, carriage returns, newlines),
// format characters (bidirectional overrides, zero-width joiners), line
// and paragraph separators and bytes that are not UTF-8 are written as
// Go escapes (\n, \x1b, \u202e), so such text can neither start a line of
// its own nor hide or restyle one. Anything else, backslashes included,
// is kept.
func escapeText(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case escaped(r) && r < utf8.RuneSelf:
			fmt.Fprintf(&b, `\x%02x`, r)
		case escaped(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i, r := range s {
		if escaped(r) || r == utf8.RuneError && !strings.HasPrefix(s[i:], string(utf8.RuneError)) {
			return true
		}
	}
	return false
}

func escaped(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// escapeArgs escapes the text among a format's arguments: strings, and
// values printed by their String or Error method. Numbers pass unchanged.
func escapeArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = escapeText(v)
		case error:
			out[i] = escapeText(v.Error())
		case fmt.Stringer:
			out[i] = escapeText(v.String())
		default:
			out[i] = a
		}
	}
	return out
}

// safef is fmt.Sprintf with the arguments' text escaped: the format is
// ours, the arguments may come from a registry.
func safef(format string, args ...any) string {
	return fmt.Sprintf(format, escapeArgs(args)...)
}
