package updatecache

import (
	"strings"
)

// compareVersions orders image versions as rpm's rpmvercmp orders
// version strings (what rpm-ostree compares): runs of digits and runs of
// letters are compared in turn, numbers numerically, a number above
// letters, other characters only separating runs; a "~" sorts before
// anything, even the end. It returns -1, 0 or +1.
func compareVersions(a, b string) int {
	for {
		a = strings.TrimLeftFunc(a, isVersionSeparator)
		b = strings.TrimLeftFunc(b, isVersionSeparator)
		if ta, tb := strings.HasPrefix(a, "~"), strings.HasPrefix(b, "~"); ta || tb {
			switch {
			case ta && tb:
				a, b = a[1:], b[1:]
				continue
			case ta:
				return -1
			default:
				return 1
			}
		}
		if a == "" || b == "" {
			return compareInts(len(a), len(b))
		}
		ra, restA := versionRun(a)
		rb, restB := versionRun(b)
		numA, numB := isDigit(ra[0]), isDigit(rb[0])
		switch {
		case numA && !numB:
			return 1
		case !numA && numB:
			return -1
		case numA:
			ra, rb = strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if c := compareInts(len(ra), len(rb)); c != 0 {
				return c
			}
		}
		if c := strings.Compare(ra, rb); c != 0 {
			return c
		}
		a, b = restA, restB
	}
}

// versionRun splits off the leading run of digits or of letters.
func versionRun(s string) (run, rest string) {
	digits := isDigit(s[0])
	i := 1
	for i < len(s) && !isVersionSeparator(rune(s[i])) && s[i] != '~' && isDigit(s[i]) == digits {
		i++
	}
	return s[:i], s[i:]
}

func isVersionSeparator(r rune) bool {
	return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '~')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func compareInts(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
