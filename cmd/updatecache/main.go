// Command updatecache checks for, caches and shows OS updates shipped as
// container images, for systems that deploy them from an OSTree repository.
// It is a thin layer over the updatecache library; see the README for the
// commands and their JSON output.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"go.podman.io/image/v5/types"

	"github.com/osimage/updatecache"
)

// Exit codes: 0 success (an update or not), 1 an error, 2 a usage error.
const (
	exitError = 1
	exitUsage = 2
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	// Errors of the library already name it.
	fmt.Fprintln(stderr, "updatecache:", strings.TrimPrefix(err.Error(), "updatecache: "))
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "Run 'updatecache --help' for usage.")
		return exitUsage
	}
	return exitError
}

// extraCommands are commands only some builds have: the demo, built with
// -tags demo.
var extraCommands []func() *cobra.Command

// globalFlags are common to every command.
type globalFlags struct {
	repo string
	json bool
}

// networkFlags are common to the commands that may reach a registry.
type networkFlags struct {
	platform         string
	authfile         string
	tlsVerify        bool
	offline          bool
	verifySignatures bool
	signaturePolicy  string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "updatecache",
		Short:         "Check for, cache and show OS updates shipped as container images",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.PersistentFlags().StringVar(&g.repo, "repo", updatecache.DefaultRepoPath, "OSTree repository `PATH`")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print JSON")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newCheckCommand(g), newStatusCommand(g), newClearCommand(g), newPullCommand(g), newPruneCommand(g))
	for _, newCommand := range extraCommands {
		root.AddCommand(newCommand())
	}
	return root
}

// exactArgs is cobra.ExactArgs reporting a usage error.
func exactArgs(n int) cobra.PositionalArgs { return usageArgs(cobra.ExactArgs(n)) }

// usageArgs makes an argument check's failure a usage error (exit 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func (n *networkFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&n.platform, "platform", "", "choose `OS/ARCH[/VARIANT]` from multi-arch images (default: this machine's)")
	f.StringVar(&n.authfile, "authfile", "", "registry credentials `FILE` (default: the containers auth.json locations)")
	f.BoolVar(&n.tlsVerify, "tls-verify", true, "verify registry TLS certificates (and require HTTPS)")
	f.BoolVar(&n.offline, "offline", false, "never use the network; fail if it is needed")
	f.BoolVar(&n.verifySignatures, "verify-signatures", false, "evaluate the signature policy: check records its verdict, pull enforces it")
	f.StringVar(&n.signaturePolicy, "signature-policy", "", "policy.json `FILE` (default: /etc/containers/policy.json)")
}

func (n *networkFlags) options() (updatecache.RegistryOptions, error) {
	sys := &types.SystemContext{AuthFilePath: n.authfile}
	if !n.tlsVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	opts := updatecache.RegistryOptions{SystemContext: sys, Offline: n.offline,
		VerifySignatures: n.verifySignatures, SignaturePolicyPath: n.signaturePolicy}
	if n.platform != "" {
		p, err := parsePlatform(n.platform)
		if err != nil {
			return opts, usageError{err}
		}
		opts.Platform = p
	}
	return opts, nil
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
