package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/dashboard"
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
	add := accountsCmd("add", "Add an API client and print its token once", accountsRunE(runAPIClientsAdd))
	add.Flags().String("name", "", "client name: letters, digits, . _ -, at most 64 (required)")
	add.Flags().String("sites", "", "comma-separated site ids the client may read and act on (default none: every site)")
	list := accountsCmd("list", "List API clients (never their tokens)", accountsRunE(runAPIClientsList))
	revoke := accountsCmd("revoke", "Revoke an API client's token at once", accountsRunE(runAPIClientsRevoke))
	revoke.Flags().String("name", "", "client to revoke (required)")
	cmd.AddCommand(add, list, revoke)
	return cmd
}

func runAPIClientsAdd(cmd *cobra.Command, s *settings, acc *dashboard.Accounts) error {
	tok, err := acc.AddAPIClient(cmd.Context(), s.String("name"), splitList(s.String("sites")), "cli")
	if err != nil {
		return fmt.Errorf("api-clients add: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "added %s\ntoken: %s\n(shown once)\n", s.String("name"), tok)
	return nil
}

func runAPIClientsList(cmd *cobra.Command, _ *settings, acc *dashboard.Accounts) error {
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

func runAPIClientsRevoke(cmd *cobra.Command, s *settings, acc *dashboard.Accounts) error {
	if err := acc.RevokeAPIClient(cmd.Context(), s.String("name")); err != nil {
		return fmt.Errorf("api-clients revoke: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", s.String("name"))
	return nil
}
