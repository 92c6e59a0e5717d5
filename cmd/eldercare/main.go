// Command eldercare is the eldercare IoT platform: one binary whose
// subcommands each run one service (ingest, alerting, dashboard, sim) or
// all of them in one process (up). See README.md and docs/configuration.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "eldercare:", err)
		os.Exit(1)
	}
}
