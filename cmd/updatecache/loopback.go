//go:build demo

package main

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// ensureLoopback makes 127.0.0.1 usable. In a fresh network namespace
// (unshare -n) the loopback interface exists but is down; bringing it up
// gives the demo its local registry while the namespace stays without any
// other network.
func ensureLoopback() error {
	if loopbackWorks() {
		return nil
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback is down: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback is down and its flags cannot be read: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback is down and cannot be brought up (run as root, or under unshare -rn): %w", err)
	}
	if !loopbackWorks() {
		return errors.New("loopback is still unusable after bringing it up")
	}
	return nil
}

func loopbackWorks() bool {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return false
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}
