// Command updatecache checks for, caches and shows OS updates shipped as
// container images, for systems that deploy them from an OSTree repository.
// It is a thin layer over the updatecache library; see the README for the
// commands and their JSON output.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/osimage/updatecache"
)

// Exit codes: 0 success (an update or not), 1 an error, 2 a usage error;
// exitSkipped and exitUnchanged only where a command says so; 128+N after
// signal N (130 for SIGINT, 143 for SIGTERM).
const (
	exitError = 1
	exitUsage = 2
	// exitSkipped (sysexits' EX_TEMPFAIL): pull did nothing because the
	// connection is metered; try again later.
	exitSkipped = 75
	// exitUnchanged: with --unchanged-exit-77, check found no update or
	// pull had nothing to fetch, as rpm-ostree's upgrade --check exits.
	exitUnchanged = 77
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitStatus ends a command that did not fail with a status other than 0,
// printing msg (if any) on standard error.
type exitStatus struct {
	code int
	msg  string
}

func (e exitStatus) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code. SIGINT and
// SIGTERM cancel the command's context: the library then removes what it
// was writing, and run returns 128 plus the signal's number.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := cancelOnSignals(context.Background())
	defer stop()
	root := newRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	if sig, ok := context.Cause(ctx).(signalCause); ok {
		fmt.Fprintf(stderr, "updatecache: %s interrupted by %s\n", cmd.Name(), sig)
		return 128 + int(sig.Signal)
	}
	var status exitStatus
	if errors.As(err, &status) {
		if status.msg != "" {
			fmt.Fprintln(stderr, escapeText(status.msg))
		}
		return status.code
	}
	// Errors of the library already name it.
	fmt.Fprintln(stderr, "updatecache:", escapeText(strings.TrimPrefix(err.Error(), "updatecache: ")))
	if h := hint(err); h != "" {
		fmt.Fprintln(stderr, h)
	}
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitError
}

// hint suggests what to do about err, where a suggestion helps.
func hint(err error) string {
	var timeout commandTimeout
	switch {
	case errors.As(err, new(usageError)):
		return "Run 'updatecache --help' for usage."
	case errors.As(err, &timeout):
		return fmt.Sprintf("hint: the command gave up after --command-timeout %v", timeout.d)
	case errors.Is(err, updatecache.ErrUnauthorized):
		return "hint: log in with 'podman login' as the user running updatecache, or pass --authfile"
	case errors.Is(err, updatecache.ErrNoCachedUpdate):
		return "hint: 'updatecache check IMAGE' finds and caches an update first"
	case errors.Is(err, updatecache.ErrPreparedUpdateGone):
		return "hint: 'updatecache check IMAGE' asks what the registry has now"
	case errors.Is(err, updatecache.ErrLockTimeout):
		return "hint: another process (rpm-ostree, bootc, ostree prune) held the repository lock; core.lock-timeout-secs sets the wait"
	case errors.Is(err, updatecache.ErrReadOnly):
		return "hint: the repository is read-only here: mounted read-only, or not writable by this user"
	}
	return ""
}

// extraCommands are commands only some builds have: the demo, built with
// -tags demo.
var extraCommands []func() *cobra.Command

// globalFlags are common to every command.
type globalFlags struct {
	repo string
	json bool
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "updatecache",
		Short:         "Check for, cache and show OS updates shipped as container images",
		Version:       versionText(),
		SilenceErrors: true,
		SilenceUsage:  true,
		// An unknown command, or none, is a usage error (cobra's default
		// for a root command that has subcommands is exit 1, or help and 0).
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usageError{errors.New(msg)}
		},
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("no command given")}
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SuggestionsMinimumDistance = 2 // cobra's default, which it sets only without Args
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
