package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// newAPIClientsCmd is "eldercare api-clients add|list|revoke": API clients'
// own bearer tokens (the same as the dashboard's /admin/tokens page).
func newAPIClientsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "api-clients",
		Short: "Manage API clients' own tokens: add (prints the token once), list, revoke",
		Long: `api-clients manages the bearer tokens of the JSON API (/api/v1) in the database
--db (the dashboard's). Each client gets its own token, limited to --sites (none:
every site); an acknowledgement through it is recorded as "api:<client>" or as
the staff account it names. Once a client token exists, the global --api-token
stops working (it is only a bootstrap).

  eldercare api-clients add --db sqlite:./data/eldercare.db --name nurse-call --sites demo-station`,
	}
	add := &cobra.Command{Use: "add", Short: "Add an API client and print its token once", Args: cobra.NoArgs, RunE: runAPIClientsAdd}
	usersDBFlag(add.Flags().String)
	add.Flags().String("name", "", "client name: letters, digits, . _ -, at most 64 (required)")
	add.Flags().String("sites", "", "comma-separated site ids the client may read and act on (default none: every site)")
	list := &cobra.Command{Use: "list", Short: "List API clients (never their tokens)", Args: cobra.NoArgs, RunE: runAPIClientsList}
	usersDBFlag(list.Flags().String)
	revoke := &cobra.Command{Use: "revoke", Short: "Revoke an API client's token at once", Args: cobra.NoArgs, RunE: runAPIClientsRevoke}
	usersDBFlag(revoke.Flags().String)
	revoke.Flags().String("name", "", "client to revoke (required)")
	cmd.AddCommand(add, list, revoke)
	return cmd
}

func runAPIClientsAdd(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	db, acc, err := openAccounts(cmd.Context(), s.String("db"))
	if err != nil {
		return err
	}
	defer db.Close()
	tok, err := acc.AddAPIClient(cmd.Context(), s.String("name"), splitList(s.String("sites")), "cli")
	if err != nil {
		return fmt.Errorf("api-clients add: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "added %s\ntoken: %s\n(shown once)\n", s.String("name"), tok)
	return nil
}

func runAPIClientsList(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	db, acc, err := openAccounts(cmd.Context(), s.String("db"))
	if err != nil {
		return err
	}
	defer db.Close()
	list, err := acc.APIClients(cmd.Context())
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSITES\tCREATED\tSTATE")
	for _, c := range list {
		sites, state := strings.Join(c.Sites, ","), "active"
		if sites == "" {
			sites = "*"
		}
		if c.Revoked != nil {
			state = "revoked " + c.Revoked.Format("2006-01-02 15:04Z")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Name, sites, c.Created.Format("2006-01-02 15:04Z"), state)
	}
	return w.Flush()
}

func runAPIClientsRevoke(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	db, acc, err := openAccounts(cmd.Context(), s.String("db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := acc.RevokeAPIClient(cmd.Context(), s.String("name")); err != nil {
		return fmt.Errorf("api-clients revoke: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", s.String("name"))
	return nil
}
