package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/broker"
)

// newExportMosquittoCmd writes the registry's device credentials and topic
// ACL as a Mosquitto password file and ACL file (docs/security.md).
func newExportMosquittoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export-mosquitto",
		Short: "Write the registry's gateway users, client ids and topic ACL as a Mosquitto configuration",
		Long: `export-mosquitto writes the configuration of Mosquitto 2.0's dynamic security
plugin for sites that run Mosquitto instead of the embedded broker:
DIR/dynamic-security.json and DIR/mosquitto-eldercare.conf (the lines to
include in mosquitto.conf). The users and rules are the ones the embedded
broker enforces: each gateway publishes only for its own site and the
devices behind it, subscribes only to their downlink (cmd) topics, and may
connect only with its username as client id, so no gateway credential can
take over the session of a platform service or of another gateway. Hashes
come from the registry's "$7$" PBKDF2-SHA512 hashes, so no plaintext is
needed.

Add to mosquitto.conf:
  include_dir or the lines of DIR/mosquitto-eldercare.conf:
  plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so
  plugin_opt_config_file DIR/dynamic-security.json
  allow_anonymous false

--format files writes DIR/passwd (password_file) and DIR/acl (acl_file)
instead, for brokers without the plugin. They cannot bind client ids to
users: prefer the plugin.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			out := s.String("out")
			if out == "" {
				return errors.New("--out: give the directory to write passwd and acl into")
			}
			ctx := cmd.Context()
			db, store, _, err := openRegistry(ctx, s.String("db"), s.String("registry"))
			if err != nil {
				return err
			}
			defer db.Close()
			accs, err := store.Accounts(ctx)
			if err != nil {
				return err
			}
			var full []broker.MosquittoUser
			if u := s.String("internal-user"); u != "" {
				h := s.String("internal-password-hash")
				if h == "" {
					return errors.New("--internal-user needs --internal-password-hash (make one with: eldercare hash-password); or set --internal-user '' to leave the platform's account out")
				}
				full = append(full, broker.MosquittoUser{Username: u, PasswordHash: h})
			}
			files := map[string][]byte{}
			switch format := s.String("format"); format {
			case "dynsec":
				js, err := broker.DynsecFile(s.String("root"), brokerAccounts(accs), full)
				if err != nil {
					return err
				}
				abs, err := filepath.Abs(out)
				if err != nil {
					return fmt.Errorf("--out: %w", err)
				}
				files["dynamic-security.json"] = js
				files["mosquitto-eldercare.conf"] = []byte(fmt.Sprintf("# Written by eldercare export-mosquitto: include these lines in mosquitto.conf.\n"+
					"# The plugin binds each gateway's client id to its username (docs/security.md).\n"+
					"plugin %s\nplugin_opt_config_file %s\nallow_anonymous false\n",
					s.String("dynsec-plugin"), filepath.Join(abs, "dynamic-security.json")))
			case "files":
				pw, acl, err := broker.MosquittoFiles(s.String("root"), brokerAccounts(accs), full)
				if err != nil {
					return err
				}
				files["passwd"], files["acl"] = pw, acl
			default:
				return fmt.Errorf("--format %q: want dynsec or files", format)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			// Mosquitto started as root reads them as the user "mosquitto":
			// the ACL and the snippet are world-readable, the hashes readable
			// (and for the plugin, which saves its changes, writable) by the
			// group.
			var names []string
			for name, b := range files {
				p := filepath.Join(out, name)
				mode := os.FileMode(0o644)
				switch name {
				case "passwd":
					mode = 0o640
				case "dynamic-security.json":
					mode = 0o660
				}
				if err := os.WriteFile(p, b, mode); err != nil {
					return fmt.Errorf("write %s: %w", p, err)
				}
				if err := os.Chmod(p, mode); err != nil {
					return fmt.Errorf("write %s: %w", p, err)
				}
				names = append(names, p)
			}
			slices.Sort(names)
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d gateway users%s\n", strings.Join(names, " and "),
				len(accs), map[bool]string{true: " and the internal user", false: ""}[len(full) > 0])
			secret := filepath.Join(out, "passwd")
			if _, ok := files["dynamic-security.json"]; ok {
				secret = filepath.Join(out, "dynamic-security.json")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mosquitto reads them as its own user: chgrp mosquitto %s\n", secret)
			return nil
		},
	}
	f := cmd.Flags()
	f.String("db", "sqlite:./data/eldercare.db", "registry database DSN: sqlite:PATH, a file path, or postgres://...")
	f.String("registry", "", "registry YAML file to import into --db first (default none: export what --db holds)")
	f.String("out", "", "directory that receives the files (dynamic-security.json mode 0660, mosquitto-eldercare.conf 0644; or passwd 0640 and acl 0644); required, created with mode 0755")
	f.String("format", "dynsec", "dynsec: the dynamic security plugin's configuration, which binds each gateway's client id to its username; files: password_file and acl_file, which cannot bind client ids")
	f.String("dynsec-plugin", "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so", "path of mosquitto_dynamic_security.so written into mosquitto-eldercare.conf (Debian/Ubuntu path; /usr/lib/mosquitto_dynamic_security.so in the eclipse-mosquitto image)")
	f.String("root", device.DefaultRoot, "MQTT topic root of the ACL rules")
	f.String("internal-user", "eldercare", "user of the platform's services with read and write access under the root; '' leaves it out")
	f.String("internal-password-hash", "", `"$7$" hash of the internal user's password, from "eldercare hash-password" (default none)`)
	return cmd
}

// newHashPasswordCmd prints the "$7$" hash of a password read from stdin,
// for the registry's credentials list.
func newHashPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-password",
		Short: `Read a password from stdin and print its "$7$" PBKDF2-SHA512 hash (Mosquitto's format) for the registry's credentials`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("read password from stdin: %w", err)
			}
			h, err := registry.HashPassword(strings.TrimRight(line, "\r\n"))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
}

// brokerAccounts converts registry accounts for the broker.
func brokerAccounts(accs []registry.Account) []broker.Account {
	out := make([]broker.Account, 0, len(accs))
	for _, a := range accs {
		out = append(out, brokerAccount(a))
	}
	return out
}

func brokerAccount(a registry.Account) broker.Account {
	return broker.Account{Username: a.Username, PasswordHash: a.PasswordHash, Site: a.SiteID, Devices: a.Devices}
}
