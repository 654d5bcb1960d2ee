package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache"
)

// checkTimeout is check's default --command-timeout. A check reads a
// manifest and a config of a few kilobytes (4 MiB each at most); two
// minutes is generous on a slow link and still ends a timer's run against
// a registry that accepted the connection and never answered.
const checkTimeout = 2 * time.Minute

// networkFlags are common to the commands that may reach a registry.
type networkFlags struct {
	platform         string
	authfile         string
	tlsVerify        bool
	offline          bool
	verifySignatures bool
	signaturePolicy  string
	timeout          time.Duration
}

// register adds the flags; defaultTimeout is the command's
// --command-timeout (0: none).
func (n *networkFlags) register(cmd *cobra.Command, defaultTimeout time.Duration) {
	f := cmd.Flags()
	f.StringVar(&n.platform, "platform", "", "choose `OS/ARCH[/VARIANT]` from multi-arch images (default: this machine's)")
	f.StringVar(&n.authfile, "authfile", "", "registry credentials `FILE` (default: the containers auth.json locations)")
	f.BoolVar(&n.tlsVerify, "tls-verify", true, "verify registry TLS certificates (and require HTTPS)")
	f.BoolVar(&n.offline, "offline", false, "never use the network; fail if it is needed")
	f.BoolVar(&n.verifySignatures, "verify-signatures", false, "evaluate the signature policy: check records its verdict, pull enforces it")
	f.StringVar(&n.signaturePolicy, "signature-policy", "", "policy.json `FILE` (default: /etc/containers/policy.json)")
	f.DurationVar(&n.timeout, "command-timeout", defaultTimeout, "give up after `DURATION` (e.g. 90s, 10m; 0: never)")
}

func (n *networkFlags) options() (updatecache.RegistryOptions, error) {
	sys := &types.SystemContext{AuthFilePath: n.authfile}
	if !n.tlsVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	opts := updatecache.RegistryOptions{SystemContext: sys, Offline: n.offline,
		VerifySignatures: n.verifySignatures, SignaturePolicyPath: n.signaturePolicy}
	if n.timeout < 0 {
		return opts, usageError{fmt.Errorf("--command-timeout %v: want 0 or more", n.timeout)}
	}
	if n.platform != "" {
		p, err := parsePlatform(n.platform)
		if err != nil {
			return opts, usageError{err}
		}
		opts.Platform = p
	}
	return opts, nil
}

// errTimedOut is the cause of a context --command-timeout ended.
var errTimedOut = errors.New("--command-timeout ran out")

// commandTimeout is an error that happened because --command-timeout
// ran out.
type commandTimeout struct {
	d   time.Duration
	err error
}

func (e commandTimeout) Error() string { return e.err.Error() }
func (e commandTimeout) Unwrap() error { return e.err }

// bounded runs fn under --command-timeout.
func (n *networkFlags) bounded(ctx context.Context, fn func(context.Context) error) error {
	if n.timeout == 0 {
		return fn(ctx)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, n.timeout, errTimedOut)
	defer cancel()
	err := fn(ctx)
	if err != nil && errors.Is(context.Cause(ctx), errTimedOut) {
		return commandTimeout{d: n.timeout, err: err}
	}
	return err
}

// parsePlatform parses --platform's OS/ARCH[/VARIANT].
func parsePlatform(s string) (*imgspecv1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return nil, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT]", s)
	}
	p := &imgspecv1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// bootRoot is where the running system's files are, for --booted.
var bootRoot = "/"

// imageFlag is a command's IMAGE argument, or --booted in its place.
type imageFlag struct{ booted bool }

func (b *imageFlag) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&b.booted, "booted", false, "instead of IMAGE, the image the booted OSTree deployment follows (its origin's container-image-reference)")
	cmd.Args = usageArgs(func(cmd *cobra.Command, args []string) error {
		if b.booted {
			if len(args) > 0 {
				return errors.New("--booted and IMAGE exclude each other")
			}
			return nil
		}
		return cobra.ExactArgs(1)(cmd, args)
	})
}

// image returns the image the command is about.
func (b *imageFlag) image(args []string) (string, error) {
	if b.booted {
		return updatecache.BootedImage(bootRoot)
	}
	return args[0], nil
}

// unchangedFlag is --unchanged-exit-77.
type unchangedFlag struct{ exit77 bool }

func (u *unchangedFlag) register(cmd *cobra.Command, when string) {
	cmd.Flags().BoolVar(&u.exit77, "unchanged-exit-77", false, "exit 77 "+when+" (as rpm-ostree upgrade --check does)")
}

// status is the command's exit status when nothing changed: 77 if asked
// for, else success.
func (u *unchangedFlag) status() error {
	if u.exit77 {
		return exitStatus{code: exitUnchanged}
	}
	return nil
}
