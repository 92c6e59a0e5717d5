package main

import (
	"errors"
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/eldercare-iot/eldercare/internal/cliconfig"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "eldercare",
		Short: "Eldercare IoT platform: MQTT ingest, alerting and a live dashboard for care stations and home care beds",
		Long: `eldercare runs the platform's services. Each subcommand is one role;
"eldercare up" runs them all in one process with an embedded broker, a SQLite
file and a child InfluxDB.

Every flag can also be set in a YAML config file (--config, keys are the flag
names) or in an environment variable: ELDERCARE_ plus the flag name in upper
case with '-' as '_' (--api-token is ELDERCARE_API_TOKEN). A flag on the
command line beats the environment, which beats the config file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("config", "", "YAML config file whose keys are flag names (env ELDERCARE_CONFIG)")
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().String("log-format", "text", "log format: text or json")
	root.AddCommand(newUpCmd(), newIngestCmd(), newAlertingCmd(), newDashboardCmd(), newSimCmd(), newVersionCmd(), newConfigDocsCmd(), newExportMosquittoCmd(), newHashPasswordCmd(), newBenchMovedCmd(), newGatewayCmd(), newUsersCmd(), newAPIClientsCmd(),
		newBackupCmd(), newRestoreCmd(), newMigrateCmd())
	return root
}

// settings resolves the flags of cmd from, in order of precedence, the
// command line, ELDERCARE_* environment variables and the config file
// (internal/cliconfig). Keys of the config file that are no flag of any
// command are an error.
type settings struct {
	*cliconfig.Settings
	v *viper.Viper
}

func loadSettings(cmd *cobra.Command) (*settings, error) {
	cs, err := cliconfig.Load(cmd)
	if err != nil {
		return nil, err
	}
	return &settings{Settings: cs, v: cs.V}, nil
}

// envName is the environment variable of a flag (cliconfig.EnvName).
func envName(flag string) string { return cliconfig.EnvName(flag) }

// loadSettingsAndLogger is loadSettings followed by settings.logger, the
// start of every role.
func loadSettingsAndLogger(cmd *cobra.Command) (*settings, *slog.Logger, error) {
	s, err := loadSettings(cmd)
	if err != nil {
		return nil, nil, err
	}
	log, err := s.logger()
	if err != nil {
		return nil, nil, err
	}
	return s, log, nil
}

// logger builds the process logger from --log-level and --log-format.
func (s *settings) logger() (*slog.Logger, error) { return s.Logger() }

// newBenchMovedCmd is what is left of `eldercare bench`: the benchmarks
// moved out of the product binary into their own command,
// cmd/eldercare-bench (make bench; docs/benchmarks.md).
func newBenchMovedCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "bench",
		Short:              "Moved: the benchmarks are the separate command eldercare-bench (make bench)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("the benchmarks moved out of this binary: build them with `make bench` (or go build ./cmd/eldercare-bench) and run `eldercare-bench ingest|alerting|sse`; see docs/benchmarks.md")
		},
	}
}
