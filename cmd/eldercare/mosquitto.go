package main

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
needed. A gateway whose hash is argon2id (the embedded broker rehashes
"$7$" hashes with argon2id at a CONNECT) is refused with the reason: give
it a new password hashed with "eldercare hash-password" (Mosquitto's
format) first. Hashes with fewer than 210000 iterations are warned about.

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
			warnWeakHashes(cmd.ErrOrStderr(), accs, full)
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
	cmd := &cobra.Command{
		Use:   "hash-password",
		Short: `Read a password (at least 12 characters) from stdin and print its hash for the registry's credentials: "$7$" PBKDF2-SHA512 with 210000 iterations (Mosquitto's format; default) or argon2id`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("read password from stdin: %w", err)
			}
			pw := strings.TrimRight(line, "\r\n")
			var h string
			switch format, _ := cmd.Flags().GetString("format"); format {
			case "mosquitto":
				h, err = mosquittoHash(pw)
			case "argon2id":
				h, err = registry.HashPasswordArgon2id(pw)
			default:
				return fmt.Errorf("--format %q: want mosquitto or argon2id", format)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
	cmd.Flags().String("format", "mosquitto", `mosquitto: "$7$" PBKDF2-HMAC-SHA512 with `+strconv.Itoa(MosquittoIterations)+` iterations, read by the embedded broker (which rehashes it with argon2id at the first CONNECT) and by an export to Mosquitto 2.0 (export-mosquitto, --internal-password-hash); argon2id: the embedded broker's own format (OWASP parameters), which Mosquitto 2.0 cannot read`)
	return cmd
}

// MosquittoIterations is the PBKDF2-HMAC-SHA512 iteration count of the
// "$7$" hashes hash-password writes: OWASP Password Storage Cheat Sheet
// (2023) asks 210,000 for PBKDF2-HMAC-SHA512. mosquitto_passwd 2.0 writes
// 101; Mosquitto reads the count from the hash (password file and
// dynamic-security plugin alike). Exports warn about accounts below it.
const MosquittoIterations = 210_000

// mosquittoHash returns the "$7$" hash of password (12-byte random salt,
// 64-byte key, standard base64: mosquitto_passwd's layout) with
// MosquittoIterations. Errors: a password shorter than
// registry.MinGatewayPasswordLen.
func mosquittoHash(password string) (string, error) {
	if len(password) < registry.MinGatewayPasswordLen {
		return "", registry.ErrShortPassword
	}
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key, err := pbkdf2.Key(sha512.New, password, salt, MosquittoIterations, 64)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return "$7$" + strconv.Itoa(MosquittoIterations) + "$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(key), nil
}

// warnWeakHashes prints a line for each account whose "$7$" hash has fewer
// than MosquittoIterations iterations (mosquitto_passwd 2.0's 101).
func warnWeakHashes(w io.Writer, accs []registry.Account, full []broker.MosquittoUser) {
	check := func(user, hash string) {
		if n, weak := broker.WeakMosquittoIterations(hash, MosquittoIterations); weak {
			fmt.Fprintf(w, "warning: %s has a \"$7$\" hash of %d PBKDF2 iterations, cheap to crack from a copy of the file: give it a new password hashed with \"eldercare hash-password\" (%d iterations)\n", user, n, MosquittoIterations)
		}
	}
	for _, u := range full {
		check(u.Username, u.PasswordHash)
	}
	for _, a := range accs {
		check(a.Username, a.PasswordHash)
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
