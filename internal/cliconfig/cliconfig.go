// Package cliconfig binds the flags of a cobra command to their other two
// sources: ELDERCARE_* environment variables and a YAML config file. A flag
// on the command line beats the environment, which beats the file; every
// value goes through the flag's own parser, so a bad value in the
// environment or the file is the same error as on the command line.
//
// It is shared by the product binary (cmd/eldercare) and the benchmark tool
// (cmd/eldercare-bench), so both read their settings the same way.
package cliconfig

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

// Settings are the resolved flags of one command.
type Settings struct {
	// V holds every flag of the command, bound by name.
	V *viper.Viper
}

// Load resolves the flags of cmd from, in order of precedence, the command
// line, ELDERCARE_* environment variables and the YAML file named by the
// flag "config" (or ELDERCARE_CONFIG), whose keys are flag names. Keys of
// the file that are no flag of any command under cmd.Root() are an error,
// as is a value that the flag's parser refuses (the error names the
// variable or key).
func Load(cmd *cobra.Command) (*Settings, error) {
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
		known := AllFlagNames(cmd.Root())
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
		if _, ok := os.LookupEnv(EnvName(f.Name)); ok {
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
	return &Settings{V: v}, nil
}

// EnvName is the environment variable of a flag: ELDERCARE_ + the name in
// upper case with '-' as '_' (api-token: ELDERCARE_API_TOKEN).
func EnvName(flag string) string {
	return "ELDERCARE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// fromEnv sets flag from its environment variable, if that is set and the
// flag was not given on the command line.
func fromEnv(fs *pflag.FlagSet, flag string) error {
	f := fs.Lookup(flag)
	val, ok := os.LookupEnv(EnvName(flag))
	if f == nil || f.Changed || !ok {
		return nil
	}
	if err := fs.Set(flag, val); err != nil {
		return fmt.Errorf("%s=%q: %w", EnvName(flag), val, err)
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

// AllFlagNames lists the local and persistent flags of root and of every
// command under it (with repeats).
func AllFlagNames(root *cobra.Command) []string {
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

// String is the value of a string flag.
func (s *Settings) String(key string) string { return s.V.GetString(key) }

// Int is the value of an integer flag.
func (s *Settings) Int(key string) int { return s.V.GetInt(key) }

// Bool is the value of a boolean flag.
func (s *Settings) Bool(key string) bool { return s.V.GetBool(key) }

// Float is the value of a float flag.
func (s *Settings) Float(key string) float64 { return s.V.GetFloat64(key) }

// Duration is the value of a duration flag.
func (s *Settings) Duration(key string) time.Duration { return s.V.GetDuration(key) }

// Logger builds the process logger (to standard error) from the flags
// log-level (debug, info, warn or error) and log-format (text or json).
func (s *Settings) Logger() (*slog.Logger, error) {
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

// Adopt adds to dst every flag of src whose name owned does not list, so
// that a command running several roles (eldercare up) takes each role's
// flags from the one function that defines them. A flag keeps its value
// (the variable it is bound to), default and help text; a name owned lists
// is left out because dst's command sets that value itself. A name that
// dst already defines and owned does not list panics: two meanings for one
// flag is a programming error, found by the first test that builds the
// command.
func Adopt(dst, src *pflag.FlagSet, owned []string) {
	src.VisitAll(func(f *pflag.Flag) {
		if slices.Contains(owned, f.Name) {
			return
		}
		if dst.Lookup(f.Name) != nil {
			panic(fmt.Sprintf("cliconfig.Adopt: flag --%s is defined twice; list it as owned or rename it", f.Name))
		}
		dst.AddFlag(f)
	})
}

// SetDefault changes the default of the flag name of fs to value (parsed
// by the flag's own parser), for a command whose default differs from the
// role's. It panics when there is no such flag or the value does not parse.
func SetDefault(fs *pflag.FlagSet, name, value string) {
	f := fs.Lookup(name)
	if f == nil {
		panic("cliconfig.SetDefault: no flag --" + name)
	}
	if err := f.Value.Set(value); err != nil {
		panic(fmt.Sprintf("cliconfig.SetDefault --%s: %v", name, err))
	}
	f.DefValue = f.Value.String()
}
