package updatecache

import "testing"

// TestCompareVersions: rpmvercmp's own test cases (rpm's tests/rpmvercmp.at),
// a selection, and image versions as Fedora and CentOS tag them.
func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0}, {"1.0", "2.0", -1}, {"2.0", "1.0", 1},
		{"2.0.1", "2.0.1", 0}, {"2.0", "2.0.1", -1}, {"2.0.1a", "2.0.1", 1},
		{"5.5p1", "5.5p2", -1}, {"5.5p10", "5.5p1", 1}, {"10xyz", "10.1xyz", -1},
		{"xyz10", "xyz10.1", -1}, {"xyz.4", "8", -1}, {"8", "xyz.4", 1},
		{"1.0010", "1.9", 1}, {"1.05", "1.5", 0}, {"1.0", "1", 1},
		{"2.50", "2.5", 1}, {"fc4", "fc.4", 0}, {"FC5", "fc4", -1},
		{"2a", "2.0", -1}, {"1.0a", "1.0", 1}, {"1.0~rc1", "1.0", -1},
		{"1.0~rc1", "1.0~rc2", -1}, {"1.0~rc1~git123", "1.0~rc1", -1},
		{"", "", 0}, {"", "1", -1}, {"1", "", 1},
		{"41.20251101.3.0", "42.20251115.1.0", -1}, {"42.20251129.0", "42.20251122.0", 1},
		{"10.0-beta", "10.0", 1}, {"stream10.20250101", "stream10.20241231", 1},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
