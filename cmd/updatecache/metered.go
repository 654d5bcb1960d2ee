package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

// NetworkManager's D-Bus name and object, and its Metered property: an
// NMMetered, whether the primary connection costs by the byte.
const (
	nmName          = "org.freedesktop.NetworkManager"
	nmPath          = "/org/freedesktop/NetworkManager"
	nmMeteredProp   = nmName + ".Metered"
	nmMeteredYes    = 1 // NM_METERED_YES: set by the user or the connection
	nmMeteredGuessY = 3 // NM_METERED_GUESS_YES: e.g. mobile broadband, a phone's hotspot
)

// meteredTimeout bounds the question to NetworkManager: a bus that does
// not answer must not hold up the pull.
const meteredTimeout = 5 * time.Second

// connectionMetered asks NetworkManager on the system bus (the one
// DBUS_SYSTEM_BUS_ADDRESS names, else the standard socket) whether the
// primary connection is metered, as GNOME Software and rpm-ostree's
// automatic updates do before downloading. Without a system bus, or
// without NetworkManager on it, the answer is no: there is nothing that
// says so. Other failures are returned.
func connectionMetered(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, meteredTimeout)
	defer cancel()
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		return false, nil // no system bus: nothing manages the network
	}
	defer conn.Close()
	var v dbus.Variant
	err = conn.Object(nmName, nmPath).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, nmName, "Metered").Store(&v)
	var dbusErr dbus.Error
	if errors.As(err, &dbusErr) && (dbusErr.Name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
		dbusErr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
		return false, nil // NetworkManager is not running
	}
	if err != nil {
		return false, fmt.Errorf("asking NetworkManager whether the connection is metered: %w", err)
	}
	metered, ok := v.Value().(uint32)
	if !ok {
		return false, fmt.Errorf("NetworkManager's %s is a %s, want a uint32", nmMeteredProp, v.Signature())
	}
	return metered == nmMeteredYes || metered == nmMeteredGuessY, nil
}
