package main

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/osimage/updatecache/internal/testtool"
)

// startBus starts a real dbus-daemon with a session bus configuration and
// returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	daemon := testtool.Need(t, "dbus-daemon", "dbus")
	cmd := exec.Command(daemon, "--session", "--nofork", "--nopidfile", "--print-address=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(addr)
}

// fakeNetworkManager owns NetworkManager's name on the bus at addr and
// exports its Metered property with the given NMMetered value; release
// gives the name up, as a stopped NetworkManager does.
func fakeNetworkManager(t *testing.T, addr string, metered uint32) (release func()) {
	t.Helper()
	conn, err := dbus.Connect(addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = prop.Export(conn, nmPath, prop.Map{nmName: {"Metered": {Value: metered, Emit: prop.EmitTrue}}})
	require.NoError(t, err)
	reply, err := conn.RequestName(nmName, dbus.NameFlagDoNotQueue)
	require.NoError(t, err)
	require.Equal(t, dbus.RequestNameReplyPrimaryOwner, reply)
	return func() {
		_, err := conn.ReleaseName(nmName)
		require.NoError(t, err)
	}
}

// TestMeteredGuard: on a real bus with a stand-in NetworkManager, pull
// skips (exit 75, one line, not one request to the registry) when the
// connection is metered or guessed metered, unless --allow-metered; it
// pulls when it is not, or when NetworkManager is not running.
func TestMeteredGuard(t *testing.T) {
	addr := startBus(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	for _, tc := range []struct {
		name     string
		metered  uint32 // NMMetered; 0 with noNM
		noNM     bool
		allow    bool
		wantCode int
	}{
		{name: "metered", metered: 1, wantCode: exitSkipped},
		{name: "guessed metered", metered: 3, wantCode: exitSkipped},
		{name: "metered, allowed", metered: 1, allow: true},
		{name: "not metered", metered: 2},
		{name: "guessed not metered", metered: 4},
		{name: "unknown", metered: 0},
		{name: "no NetworkManager", noNM: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.noNM {
				defer fakeNetworkManager(t, addr, tc.metered)()
			}
			e := newCLIEnv(t)
			e.push(e.image("2"))
			e.reg.Reset()
			args := append([]string{"pull"}, e.netArgs()...)
			if tc.allow {
				args = append(args, "--allow-metered")
			}
			code, stdout, stderr := e.run(append(args, e.ref)...)
			require.Equal(t, tc.wantCode, code, "%s%s", stdout, stderr)
			if tc.wantCode == exitSkipped {
				assert.Equal(t, "updatecache: not pulling: the network connection is metered (NetworkManager); --allow-metered pulls anyway\n", stderr)
				assert.Empty(t, stdout)
				assert.Zero(t, e.reg.Counts().Total, "requests to the registry")
			} else {
				assert.Contains(t, stdout, "Deployed: ")
			}
		})
	}

	// No bus at all: nothing says the connection is metered.
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
	metered, err := connectionMetered(t.Context())
	assert.NoError(t, err)
	assert.False(t, metered)
}
