package main

import (
	"errors"
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
	root.AddCommand(newUpCmd(), newIngestCmd(), newAlertingCmd(), newDashboardCmd(), newSimCmd(), newVersionCmd(), newConfigDocsCmd(), newExportMosquittoCmd(), newHashPasswordCmd(), newBenchCmd(), newGatewayCmd(), newUsersCmd(), newAPIClientsCmd(),
		newBackupCmd(), newRestoreCmd(), newMigrateCmd())
	return root
}

// settings resolves the flags of cmd from, in order of precedence, the
// command line, ELDERCARE_* environment variables and the config file.
// Keys of the config file that are no flag of any command are an error.
type settings struct {
	v *viper.Viper
}

func loadSettings(cmd *cobra.Command) (*settings, error) {
	fs := cmd.Flags()
	// The config file's own path may come from the environment.
	if err := fromEnv(fs, "config"); err != nil {
		return nil, err
	}
	var file *viper.Viper
	if path, _ := fs.GetString("config"); path != "" {
		file = viper.New()
		file.SetConfigFile(path)
		file.SetConfigType("yaml")
		if err := file.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config file %s: %w", path, err)
		}
		known := allFlagNames(cmd.Root())
		var unknown []string
		for _, k := range file.AllKeys() {
			if !slices.Contains(known, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("config file %s: unknown keys %s (keys are flag names; see docs/configuration.md)", path, strings.Join(unknown, ", "))
		}
	}
	// Each value from the environment or the file goes through the flag's
	// own parser, so "ELDERCARE_OFFLINE_TIMEOUT=30" is an error, exactly as
	// "--offline-timeout 30" is, never 30 ns or a silent default.
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" {
			return
		}
		if _, ok := os.LookupEnv(envName(f.Name)); ok {
			errs = append(errs, fromEnv(fs, f.Name))
			return
		}
		if file != nil && file.IsSet(f.Name) {
			if err := fs.Set(f.Name, configString(file.Get(f.Name))); err != nil {
				errs = append(errs, fmt.Errorf("config key %s: %w", f.Name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	v := viper.New()
	if err := v.BindPFlags(fs); err != nil {
		return nil, fmt.Errorf("bind flags: %w", err)
	}
	return &settings{v: v}, nil
}

// envName is the environment variable of a flag: ELDERCARE_ + the name in
// upper case with '-' as '_'.
func envName(flag string) string {
	return "ELDERCARE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fromEnv sets flag from its environment variable, if that is set and the
// flag was not given on the command line.
func fromEnv(fs *pflag.FlagSet, flag string) error {
	f := fs.Lookup(flag)
	val, ok := os.LookupEnv(envName(flag))
	if f == nil || f.Changed || !ok {
		return nil
	}
	if err := fs.Set(flag, val); err != nil {
		return fmt.Errorf("%s=%q: %w", envName(flag), val, err)
	}
	return nil
}

// configString renders a YAML value as flag text: lists join with commas.
func configString(v any) string {
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, x := range list {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
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
