// Command eldercare-bench runs the platform's benchmarks: ingest against
// Telegraf, alerting latency under load, and the dashboard's live feed with
// many SSE clients (docs/benchmarks.md). It is a separate binary so that
// about 1,700 lines of load generation and process metering stay out of the
// product binary (cmd/eldercare); build it with `make bench`. Everything it
// starts listens on 127.0.0.1 and every run is bounded.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/internal/cliconfig"
)

// cpuProfileEnv names the file to which `eldercare ingest` writes a Go CPU
// profile of its whole run (cmd/eldercare/ingest.go reads it).
const cpuProfileEnv = "ELDERCARE_INGEST_CPU_PROFILE"

type settings = cliconfig.Settings

func loadSettings(cmd *cobra.Command) (*settings, error) { return cliconfig.Load(cmd) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "eldercare-bench:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "eldercare-bench",
		Short: "Benchmarks of the eldercare platform (loopback only, bounded; not run in CI)",
		Long: `eldercare-bench measures the platform on this machine: ingest against
Telegraf (ingest), fall-to-notification latency under telemetry load
(alerting) and the dashboard's live feed with many SSE clients (sse).
Results and how to read them: docs/benchmarks.md.

Every flag can also be set as ELDERCARE_ plus the flag name in upper case
with '-' as '_', or in a YAML file (--config), as for eldercare itself.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "YAML config file whose keys are flag names (env ELDERCARE_CONFIG)")
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().String("log-format", "text", "log format: text or json")
	root.AddCommand(newBenchIngestCmd(), newBenchAlertingCmd(), newBenchSSECmd())
	return root
}

// eldercareBin is the product binary the ingest benchmark runs as a child:
// --eldercare-bin, else eldercare in this binary's directory, else on PATH.
func eldercareBin(s *settings) (string, error) {
	if b := s.String("eldercare-bin"); b != "" {
		return b, nil
	}
	if self, err := os.Executable(); err == nil {
		b := filepath.Join(filepath.Dir(self), "eldercare")
		if _, err := os.Stat(b); err == nil {
			return b, nil
		}
	}
	b, err := exec.LookPath("eldercare")
	if err != nil {
		return "", fmt.Errorf("no eldercare binary next to eldercare-bench or on the PATH (make build, or --eldercare-bin): %w", err)
	}
	return b, nil
}
