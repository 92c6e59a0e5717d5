package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		Short: "Write the registry's gateway users and topic ACL as a Mosquitto password file and ACL file",
		Long: `export-mosquitto writes DIR/passwd (password_file) and DIR/acl (acl_file) for
sites that run Mosquitto 2.0 instead of the embedded broker. The users and
rules are the ones the embedded broker enforces: each gateway publishes only
for its own site and the devices behind it, and subscribes only to their
downlink (cmd) topics. Hashes are copied as they are: the registry keeps
Mosquitto's own "$7$" PBKDF2-SHA512 format, so no plaintext is needed.

Add to mosquitto.conf:
  password_file DIR/passwd
  acl_file DIR/acl
  allow_anonymous false`,
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
			pw, acl, err := broker.MosquittoFiles(s.String("root"), brokerAccounts(accs), full)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			// Mosquitto started as root reads them as the user "mosquitto":
			// the ACL is world-readable, the hashes readable by the group.
			for name, b := range map[string][]byte{"passwd": pw, "acl": acl} {
				p := filepath.Join(out, name)
				mode := os.FileMode(0o644)
				if name == "passwd" {
					mode = 0o640
				}
				if err := os.WriteFile(p, b, mode); err != nil {
					return fmt.Errorf("write %s: %w", p, err)
				}
				if err := os.Chmod(p, mode); err != nil {
					return fmt.Errorf("write %s: %w", p, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s: %d gateway users%s\n", filepath.Join(out, "passwd"), filepath.Join(out, "acl"),
				len(accs), map[bool]string{true: " and the internal user", false: ""}[len(full) > 0])
			fmt.Fprintf(cmd.OutOrStdout(), "mosquitto reads them as its own user: chgrp mosquitto %s\n", filepath.Join(out, "passwd"))
			return nil
		},
	}
	f := cmd.Flags()
	f.String("db", "sqlite:./data/eldercare.db", "registry database DSN: sqlite:PATH, a file path, or postgres://...")
	f.String("registry", "", "registry YAML file to import into --db first (default none: export what --db holds)")
	f.String("out", "", "directory that receives passwd (mode 0640) and acl (mode 0644); required, created with mode 0755")
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
