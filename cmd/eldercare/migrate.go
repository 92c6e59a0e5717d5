package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/ingest"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// component is one part of the product that keeps its schema in the shared
// database, with its own goose version table.
type component struct {
	name  string
	table string
	// migrate applies its pending migrations (by opening its store).
	migrate func(ctx context.Context, db *sqldb.DB) error
}

// components lists every schema owner, in the order the roles open them.
var components = []component{
	{"registry", registry.VersionTable, func(ctx context.Context, db *sqldb.DB) error {
		_, err := registry.Open(ctx, db)
		return err
	}},
	{"alerting", alerting.VersionTable, func(ctx context.Context, db *sqldb.DB) error {
		_, err := alerting.OpenManager(ctx, db, slog.New(slog.DiscardHandler))
		return err
	}},
	{"dashboard", dashboard.VersionTable, func(ctx context.Context, db *sqldb.DB) error {
		_, err := dashboard.OpenAccounts(ctx, db, nil)
		return err
	}},
	{"ingest", ingest.VersionTable, func(ctx context.Context, db *sqldb.DB) error {
		_, err := ingest.OpenDeadLetters(ctx, db)
		return err
	}},
}

func componentNames() []string {
	var out []string
	for _, c := range components {
		out = append(out, c.name)
	}
	return out
}

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Show or apply the database schema migrations of each component",
		Long: `Every role applies its own migrations when it starts, under a lock
(SQLite: flock of DB-migrate.lock; PostgreSQL: pg_advisory_lock), so roles
started together on a new database all succeed. "migrate up" applies them
ahead of time (for example before an upgrade, as a systemd ExecStartPre or a
Kubernetes init container); "migrate status" lists what is applied.`,
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "List the applied migration versions of each component",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			db, err := sqldb.Open(cmd.Context(), s.String("db"))
			if err != nil {
				return fmt.Errorf("--db: %w", err)
			}
			defer db.Close()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 8, 2, ' ', 0)
			fmt.Fprintln(w, "COMPONENT\tVERSION TABLE\tAPPLIED\tLATEST\tAPPLIED AT (UTC)")
			for _, c := range components {
				applied, ok, err := db.Applied(cmd.Context(), c.table)
				if err != nil {
					return err
				}
				if !ok || len(applied) == 0 {
					fmt.Fprintf(w, "%s\t%s\tnone\t-\t-\n", c.name, c.table)
					continue
				}
				var vs []string
				for _, a := range applied {
					vs = append(vs, fmt.Sprint(a.Version))
				}
				last := applied[len(applied)-1]
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", c.name, c.table, strings.Join(vs, ","), last.Version, last.At.Format(time.DateTime))
			}
			return w.Flush()
		},
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration (of --components) and print the status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			want := s.v.GetStringSlice("components")
			for _, w := range want {
				if !slices.Contains(componentNames(), w) {
					return fmt.Errorf("--components: unknown component %q (want some of %s)", w, strings.Join(componentNames(), ", "))
				}
			}
			db, err := sqldb.Open(cmd.Context(), s.String("db"))
			if err != nil {
				return fmt.Errorf("--db: %w", err)
			}
			defer db.Close()
			for _, c := range components {
				if len(want) > 0 && !slices.Contains(want, c.name) {
					continue
				}
				if err := c.migrate(cmd.Context(), db); err != nil {
					return fmt.Errorf("migrate %s: %w", c.name, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: up to date\n", c.name)
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{status, up} {
		c.Flags().String("db", "sqlite:./data/eldercare.db", "database: sqlite:PATH, a file path, or postgres://... (the roles' --db)")
	}
	up.Flags().StringSlice("components", nil, "components to migrate, comma-separated: "+strings.Join(componentNames(), ", ")+" (default all)")
	cmd.AddCommand(status, up)
	return cmd
}
