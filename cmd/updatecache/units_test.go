package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache/internal/testtool"
)

// unitsDir holds the systemd units the project ships.
const unitsDir = "../../contrib/systemd"

// TestSystemdUnits: systemd-analyze verify finds nothing to say about the
// shipped units (with ExecStart pointing at the built command), and each
// ExecStart is a command line the command accepts.
func TestSystemdUnits(t *testing.T) {
	analyze := testtool.Need(t, "systemd-analyze", "systemd")
	bin := buildCLI(t)
	services, err := filepath.Glob(filepath.Join(unitsDir, "*.service"))
	require.NoError(t, err)
	timers, err := filepath.Glob(filepath.Join(unitsDir, "*.timer"))
	require.NoError(t, err)
	units := append(services, timers...)
	dir := t.TempDir()
	var names []string
	var execs [][]string
	for _, u := range units {
		data, err := os.ReadFile(u)
		require.NoError(t, err)
		text := strings.ReplaceAll(string(data), "/usr/bin/updatecache", bin)
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(u)), []byte(text), 0o644))
		names = append(names, filepath.Base(u))
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			if cmdline, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
				execs = append(execs, strings.Fields(cmdline))
			}
		}
	}
	assert.ElementsMatch(t, []string{"updatecache-check.service", "updatecache-check.timer",
		"updatecache-pull.service", "updatecache-pull.timer"}, names)
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, names...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "%s", out)
	assert.Empty(t, string(out), "systemd-analyze verify has warnings")

	require.Len(t, execs, 2)
	for _, argv := range execs {
		require.Equal(t, bin, argv[0])
		out, err := exec.Command(bin, append(argv[1:], "--help")...).CombinedOutput()
		assert.NoError(t, err, "%v: %s", argv, out)
	}
}
