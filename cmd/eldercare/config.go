package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

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
	root.AddCommand(newUpCmd(), newIngestCmd(), newAlertingCmd(), newDashboardCmd(), newSimCmd(), newVersionCmd(), newConfigDocsCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and the wire protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "eldercare %s (protocol v1)\n", Version)
			return nil
		},
	}
}

// settings resolves the flags of cmd from, in order of precedence, the
// command line, ELDERCARE_* environment variables and the config file.
// Keys of the config file that are no flag of any command are an error.
type settings struct {
	v *viper.Viper
}

func loadSettings(cmd *cobra.Command) (*settings, error) {
	v := viper.New()
	v.SetEnvPrefix("ELDERCARE")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(cmd.Flags()); err != nil {
		return nil, fmt.Errorf("bind flags: %w", err)
	}
	if err := v.BindPFlags(cmd.InheritedFlags()); err != nil {
		return nil, fmt.Errorf("bind flags: %w", err)
	}
	if file := v.GetString("config"); file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config file %s: %w", file, err)
		}
		known := allFlagNames(cmd.Root())
		var unknown []string
		for _, k := range v.AllKeys() {
			if !slices.Contains(known, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("config file %s: unknown keys %s (keys are flag names; see docs/configuration.md)", file, strings.Join(unknown, ", "))
		}
	}
	return &settings{v: v}, nil
}

func allFlagNames(root *cobra.Command) []string {
	var names []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return names
}

func (s *settings) String(key string) string { return s.v.GetString(key) }
func (s *settings) Int(key string) int       { return s.v.GetInt(key) }
func (s *settings) Bool(key string) bool     { return s.v.GetBool(key) }
func (s *settings) Float(key string) float64 { return s.v.GetFloat64(key) }
func (s *settings) Duration(key string) time.Duration {
	return s.v.GetDuration(key)
}

// logger builds the process logger from --log-level and --log-format.
func (s *settings) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch s.String("log-format") {
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", s.String("log-format"))
	}
}
