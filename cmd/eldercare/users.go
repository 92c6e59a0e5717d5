package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// newUsersCmd is "eldercare users add|list|passwd": dashboard accounts.
func newUsersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage dashboard accounts: add (the first admin too), list, passwd",
		Long: `users manages the dashboard's accounts in the database --db (the one the
dashboard and "up" use). Roles: admin (everything), manager and nurse_lead
(their --sites, reports), caregiver (their --sites), family (their linked
--residents only). Passwords are stored as argon2id hashes.

Create the first admin:

  eldercare users add --db sqlite:./data/eldercare.db --username admin --role admin

A new password is generated and printed once unless --password-stdin reads it
from stdin (one line; at least 10 characters):

  printf '%s\n' "$PW" | eldercare users add --username ana --role caregiver --sites demo-station --password-stdin`,
	}
	add := accountsCmd("add", "Add a dashboard account (prints a generated password unless --password-stdin)", runUsersAdd)
	f := add.Flags()
	f.String("username", "", "login name: lower-case letters, digits and . _ - @, at most 64 (required)")
	f.String("role", "", "role: admin, manager, nurse_lead, caregiver or family (required)")
	f.String("name", "", "display name shown in the alert history (default: the username)")
	f.String("lang", "en", "interface language: en or zh-CN")
	f.String("sites", "", "comma-separated site ids the account sees (manager, nurse_lead, caregiver; required for them; not for admin, who sees every site)")
	f.String("residents", "", "comma-separated resident ids a family account is linked to (family only; required for it)")
	f.Bool("password-stdin", false, "read the password from the first line of stdin instead of generating one (default false)")

	list := accountsCmd("list", "List dashboard accounts (never their passwords)", accountsRunE(runUsersList))
	passwd := accountsCmd("passwd", "Set a new password for a dashboard account (prints a generated one unless --password-stdin)", runUsersPasswd)
	pf := passwd.Flags()
	pf.String("username", "", "account whose password to set (required)")
	pf.Bool("password-stdin", false, "read the new password from the first line of stdin instead of generating one (default false)")
	cmd.AddCommand(add, list, passwd)
	return cmd
}

// accountsCmd is a subcommand of users or api-clients: no arguments, and
// --db, the database of the dashboard's accounts.
func accountsCmd(use, short string, run func(*cobra.Command, []string) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: run}
	cmd.Flags().String("db", "sqlite:./data/eldercare.db", "database of the dashboard accounts: sqlite:PATH, a file path, or postgres://... (the dashboard's --db)")
	return cmd
}

// withAccounts opens the account store of the database named by s's --db
// (migrating it), runs fn with it and closes the database.
func withAccounts(ctx context.Context, s *settings, fn func(*dashboard.Accounts) error) error {
	db, acc, err := openAccounts(ctx, s.String("db"))
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(acc)
}

// accountsRunE is the RunE of an accountsCmd that needs nothing but its
// settings and the account store: it loads the settings, opens the store
// of --db and runs fn.
func accountsRunE(fn func(cmd *cobra.Command, s *settings, acc *dashboard.Accounts) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		s, err := loadSettings(cmd)
		if err != nil {
			return err
		}
		return withAccounts(cmd.Context(), s, func(acc *dashboard.Accounts) error { return fn(cmd, s, acc) })
	}
}

// openAccounts opens dsn and the dashboard's account store (migrating it).
func openAccounts(ctx context.Context, dsn string) (*sqldb.DB, *dashboard.Accounts, error) {
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	acc, err := dashboard.OpenAccounts(ctx, db, nil)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, acc, nil
}

// readPassword returns the first line of stdin (fromStdin) or a generated
// password (generated true).
func readPassword(in io.Reader, fromStdin bool) (pw string, generated bool, err error) {
	if !fromStdin {
		return dashboard.GeneratePassword(), true, nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return "", false, fmt.Errorf("read password from stdin: %w", err)
	}
	pw = strings.TrimRight(line, "\r\n")
	return pw, false, dashboard.CheckPassword(pw)
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func runUsersAdd(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	u := dashboard.User{
		Username: s.String("username"), Name: s.String("name"), Role: s.String("role"), Lang: s.String("lang"),
		Sites: splitList(s.String("sites")), Residents: splitList(s.String("residents")),
	}
	if u.Role == dashboard.RoleAdmin && len(u.Sites) > 0 {
		return errors.New("users add: --sites: an admin sees every site; leave --sites out")
	}
	pw, generated, err := readPassword(cmd.InOrStdin(), s.Bool("password-stdin"))
	if err != nil {
		return fmt.Errorf("users add: %w", err)
	}
	if err := errors.Join(u.Validate(), dashboard.CheckPassword(pw)); err != nil {
		return fmt.Errorf("users add: %w", err)
	}
	if err := withAccounts(cmd.Context(), s, func(acc *dashboard.Accounts) (err error) {
		u, err = acc.Add(cmd.Context(), u, pw)
		return err
	}); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "added %s (%s, id %d)\n", u.Username, u.Role, u.ID)
	if generated {
		fmt.Fprintf(out, "password: %s\n(shown once; change it on the dashboard's /account page or with \"eldercare users passwd\")\n", pw)
	}
	return nil
}

func runUsersList(cmd *cobra.Command, _ *settings, acc *dashboard.Accounts) error {
	us, err := acc.List(cmd.Context())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSERNAME\tNAME\tROLE\tLANG\tSITES\tRESIDENTS")
	dash := func(xs []string) string {
		if len(xs) == 0 {
			return "-"
		}
		return strings.Join(xs, ",")
	}
	for _, u := range us {
		sites := dash(u.Sites)
		if u.Role == dashboard.RoleAdmin {
			sites = "(all)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Username, u.Name, u.Role, u.Lang, sites, dash(u.Residents))
	}
	return tw.Flush()
}

func runUsersPasswd(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	name := s.String("username")
	if name == "" {
		return errors.New("users passwd: --username is required")
	}
	pw, generated, err := readPassword(cmd.InOrStdin(), s.Bool("password-stdin"))
	if err != nil {
		return fmt.Errorf("users passwd: %w", err)
	}
	if err := withAccounts(cmd.Context(), s, func(acc *dashboard.Accounts) error {
		return acc.SetPassword(cmd.Context(), name, pw)
	}); err != nil {
		return fmt.Errorf("users passwd: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "password of %s changed (sessions already open stay logged in until they expire or the dashboard restarts)\n", name)
	if generated {
		fmt.Fprintf(cmd.OutOrStdout(), "password: %s\n", pw)
	}
	return nil
}
