package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// subcommand finds the command name under the root.
func subcommand(t *testing.T, root *cobra.Command, name string) *cobra.Command {
	t.Helper()
	for _, c := range root.Commands() {
		if c.Name() == name {
			return c
		}
	}
	t.Fatalf("no command %s", name)
	return nil
}

// TestUpTakesEveryRoleFlag: every flag of `eldercare ingest`, `alerting`
// and `dashboard` is a flag of `up` too, with the role's type, help text
// and default (except --leave-group-on-stop, false in up), unless up owns
// the name (upOwnedFlags); and every up-owned name is one of a role's.
func TestUpTakesEveryRoleFlag(t *testing.T) {
	t.Parallel()
	root := newRootCmd()
	up := subcommand(t, root, "up").Flags()
	used := map[string]bool{}
	for _, role := range []string{"ingest", "alerting", "dashboard"} {
		subcommand(t, root, role).LocalFlags().VisitAll(func(f *pflag.Flag) {
			used[f.Name] = true
			if slices.Contains(upOwnedFlags, f.Name) {
				return
			}
			u := up.Lookup(f.Name)
			if u == nil {
				t.Errorf("%s --%s is no flag of up", role, f.Name)
				return
			}
			if u.Value.Type() != f.Value.Type() || u.Usage != f.Usage {
				t.Errorf("up --%s differs from %s --%s: %s %q vs %s %q", f.Name, role, f.Name, u.Value.Type(), u.Usage, f.Value.Type(), f.Usage)
			}
			want := f.DefValue
			if f.Name == "leave-group-on-stop" {
				want = "false"
			}
			if u.DefValue != want {
				t.Errorf("up --%s default %q, want %q", f.Name, u.DefValue, want)
			}
		})
	}
	for _, name := range upOwnedFlags {
		if !used[name] {
			t.Errorf("upOwnedFlags lists %s, which no role has", name)
		}
	}
	// Today's up flags keep their defaults.
	for name, def := range map[string]string{"http": "127.0.0.1:8080", "mqtt": "", "influx": "", "db": "", "api-token": "",
		"offline-timeout": "2m0s", "root": "eldercare", "influx-db": "eldercare", "influx-rp": "autogen"} {
		if f := up.Lookup(name); f == nil || f.DefValue != def {
			t.Errorf("up --%s: %v, want default %q", name, f, def)
		}
	}
	for _, name := range []string{"client-id", "gc-percent"} {
		if up.Lookup(name) != nil {
			t.Errorf("up has --%s, which it owns and must not take from a role", name)
		}
	}
}

// TestUpRoleFlagsReachTheRoles: a role flag given to up (on the command
// line, in the environment) lands in that role's configuration.
func TestUpRoleFlagsReachTheRoles(t *testing.T) {
	var roles upRoles
	cmd := &cobra.Command{Use: "up"}
	roles.bind(cmd.Flags())
	(&cobra.Command{Use: "r"}).AddCommand(cmd)
	t.Setenv("ELDERCARE_GROUP", "station-7")
	if err := cmd.Flags().Parse([]string{"--retire", "--writers", "9", "--map-tiles", "https://t.example/{z}/{x}/{y}.png",
		"--shared-subscription=false"}); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSettings(cmd); err != nil {
		t.Fatal(err)
	}
	if !roles.alerting.Retire || roles.ingest.Writers != 9 || roles.ingest.Group != "station-7" ||
		roles.ingest.SharedSubscription || roles.ingest.LeaveGroupOnStop || roles.dashboard.MapTiles == "" {
		t.Errorf("roles %+v", roles)
	}
	if svc := roles.ingest.service(); !svc.Unshared || svc.Group != "station-7" || svc.LeaveGroupOnStop {
		t.Errorf("ingest.Config %+v", svc)
	}
}

// parsedConfig binds a role configuration to a fresh command and parses
// args into it.
func parsedConfig(t *testing.T, bind func(*pflag.FlagSet), args ...string) {
	t.Helper()
	cmd := &cobra.Command{Use: "x"}
	bind(cmd.Flags())
	(&cobra.Command{Use: "r"}).AddCommand(cmd)
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSettings(cmd); err != nil {
		t.Fatal(err)
	}
}

// checkValidate: the defaults are valid; each bad value is refused with an
// error naming its field or flag.
func checkValidate(t *testing.T, validate func(args ...string) error, bad map[string][]string) {
	t.Helper()
	if err := validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	for want, args := range bad {
		if err := validate(args...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v, want one naming %s", args, err, want)
		}
	}
}

func TestIngestConfigValidate(t *testing.T) {
	t.Parallel()
	checkValidate(t, func(args ...string) error {
		var c ingestConfig
		parsedConfig(t, c.bind, args...)
		return c.Validate()
	}, map[string][]string{
		"MQTTURL":                    {"--mqtt", "http://x"},
		"Group":                      {"--group", "a/b"},
		"BatchSize -1":               {"--batch-size", "-1"},
		"Writers 65":                 {"--writers", "65"},
		"MaxInFlight 70000":          {"--max-in-flight", "70000"},
		"Retention[events].Duration": {"--retention-events", "30m"},
		"InfluxURL":                  {"--influx", "ftp://x"},
	})
	if err := setGCPercent(10); err == nil || !strings.Contains(err.Error(), "--gc-percent 10") {
		t.Errorf("--gc-percent 10: %v", err)
	}
}

func TestAlertingConfigValidate(t *testing.T) {
	t.Parallel()
	checkValidate(t, func(args ...string) error {
		var c alertingConfig
		parsedConfig(t, c.bind, args...)
		return c.Validate()
	}, map[string][]string{
		"--offline-timeout":       {"--offline-timeout", "0s"},
		"--public-url":            {"--public-url", "care.example.org"},
		"--chat-webhook-lang":     {"--chat-webhook-lang", "fr"},
		"--chat-webhook-template": {"--chat-webhook-url", "https://x", "--chat-webhook-template", "teams"},
		"--chat-webhook-url":      {"--chat-webhook-url", "ftp://x"},
		"webhook secret":          {"--webhook-url", "https://x"},
		"root":                    {"--root", "a/+"},
	})
}

func TestDashboardConfigValidate(t *testing.T) {
	t.Parallel()
	token := []string{"--api-token", "0123456789abcdef0123"}
	checkValidate(t, func(args ...string) error {
		var c dashboardConfig
		parsedConfig(t, c.bind, append(slices.Clone(token), args...)...)
		return c.Validate()
	}, map[string][]string{
		"ELDERCARE_API_TOKEN": {"--api-token", ""},
		"api token: 5":        {"--api-token", "short"},
		"trusted proxy":       {"--trusted-proxies", "not-an-ip"},
		"http address":        {"--http", "nowhere"},
		"topic root":          {"--root", "a/#"},
	})
}

func TestGatewayConfigValidate(t *testing.T) {
	t.Parallel()
	checkValidate(t, func(args ...string) error {
		var c gatewayConfig
		parsedConfig(t, c.bind, append([]string{"--gateway-config", "gw.yaml"}, args...)...)
		c.Uplink.ID, c.Uplink.Site = "gw-1", "home-1" // from the file (loadGatewayFile)
		return c.Validate()
	}, map[string][]string{
		"--gateway-config":   {"--gateway-config", ""},
		"spool path":         {"--spool", ""},
		"spool max bytes":    {"--spool-max-bytes", "-1"},
		"max message bytes":  {"--max-message-bytes", "100"},
		"in flight":          {"--in-flight", "70000"},
		"local alarm topic":  {"--local-alarm-topic", "a/#"},
		"heartbeat interval": {"--heartbeat-interval", "-1s"},
	})
}

func TestUpConfigValidate(t *testing.T) {
	t.Parallel()
	checkValidate(t, func(args ...string) error {
		var c upConfig
		parsedConfig(t, c.bind, args...)
		return c.Validate()
	}, map[string][]string{
		"--speed":     {"--demo", "--speed", "5000"},
		"--mqtt-auth": {"--mqtt-auth", "maybe"},
	})
	var c upConfig // an external broker: --mqtt-auth is not used
	parsedConfig(t, c.bind, "--mqtt", "tcp://broker:1883", "--mqtt-auth", "maybe")
	if err := c.Validate(); err != nil {
		t.Errorf("--mqtt-auth with --mqtt: %v", err)
	}
}
