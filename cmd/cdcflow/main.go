// Command cdcflow consumes change-data-capture streams (Aurora DSQL CDC,
// Debezium, AWS DMS, DynamoDB Streams) and keeps analytics stores current.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
