package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the job failed at run time
	exitUsage   = 2 // bad flags, arguments or configuration
)

// usageError marks errors that are the user's to fix in the command line or
// configuration; they exit with exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// streams are the command's standard streams, injected for tests.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

func run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	s := &streams{in: in, out: out, err: errOut}
	root := &cobra.Command{
		Use:   "cdcflow",
		Short: "Keep analytics stores current from change-data-capture streams",
		Long: `cdcflow consumes change records (Aurora DSQL CDC, Debezium, AWS DMS,
DynamoDB Streams) from files, Kafka or Kinesis and keeps an append-only event
log and merged, typed tables current, ordered by source commit order.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(
		inspectCmd(s),
		validateCmd(s),
		loadCmd(s),
		runCmd(s),
		queryCmd(s),
		ddlCmd(s),
	)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(errOut, "cdcflow: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitFailure
}

// isCobraUsage recognises the argument errors cobra itself returns (unknown
// command, wrong number of arguments), which carry no type of their own.
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command")
}

// argsUsage wraps a cobra.PositionalArgs so its errors are usage errors.
func argsUsage(f cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := f(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
