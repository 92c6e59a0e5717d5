package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/internal/backup"
	"github.com/eldercare-iot/eldercare/internal/influxd"
)

// secretFiles are the files of an `up` data directory that a backup keeps.
var secretFiles = []string{"api-token", influxCredentialsFile, demoAccountsFile, internalMQTTFile}

func newBackupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Write a consistent snapshot of the SQLite store and the managed InfluxDB into a new directory",
		Long: `backup writes, into the new directory --out (mode 0700, files 0600):
  eldercare.db   the SQLite store, copied with VACUUM INTO (one consistent
                 snapshot while the roles keep writing)
  influxdb/      the InfluxDB that "up" manages, with "influxd backup -portable"
                 against its RPC address (read from DATA/influxdb/influxd.conf)
  secrets/       the API token, the InfluxDB accounts, the embedded broker's
                 internal MQTT password and the demo accounts of DATA
  manifest.json  version, time, every file with its size and SHA-256
It runs beside a running "eldercare up". For PostgreSQL and an external InfluxDB
use pg_dump and "influxd backup -portable" (docs/operations.md).

  eldercare backup --data ./data --out /var/backups/eldercare/$(date +%F)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			return runBackup(cmd, s)
		},
	}
	f := cmd.Flags()
	f.String("out", "", "backup directory to create (must not exist or be empty)")
	f.String("data", "", "data directory of 'eldercare up': its eldercare.db, managed InfluxDB and secrets")
	f.String("db", "", "the store to back up: sqlite:PATH or a file path (default DATA/eldercare.db); PostgreSQL: use pg_dump")
	f.String("influx-rpc", "", "RPC address (host:port) of an InfluxDB 1.8 to back up with influxd backup -portable (default: the managed one of DATA; \"none\" skips InfluxDB)")
	f.String("influxd", "", "influxd binary that runs the InfluxDB backup (default: $ELDERCARE_INFLUXD, PATH, $GOPATH/bin)")
	return cmd
}

func runBackup(cmd *cobra.Command, s *settings) error {
	out, data := s.String("out"), s.String("data")
	if out == "" {
		return errors.New("--out: required")
	}
	opt := backup.Options{Out: out}
	opt.Version, opt.Commit, _ = buildStamp()
	switch dsn := s.String("db"); {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return errors.New("--db: a PostgreSQL store is backed up with pg_dump --format=custom (docs/operations.md, Backup and restore)")
	case dsn != "":
		opt.SQLite = strings.TrimPrefix(strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:"), "file:")
		opt.SQLite, _, _ = strings.Cut(opt.SQLite, "?")
	case data != "":
		opt.SQLite = filepath.Join(data, "eldercare.db")
	}
	switch rpc := s.String("influx-rpc"); {
	case rpc == "none":
	case rpc != "":
		opt.InfluxRPC = rpc
	case data != "":
		if _, err := os.Stat(filepath.Join(data, "influxdb", "influxd.conf")); err == nil {
			_, opt.InfluxRPC, err = influxd.ReadAddrs(filepath.Join(data, "influxdb"))
			if err != nil {
				return err
			}
		}
	}
	if opt.InfluxRPC != "" {
		opt.Influxd = s.String("influxd")
		if opt.Influxd == "" {
			var err error
			if opt.Influxd, err = influxd.Find(); err != nil {
				return err
			}
		}
	}
	if data != "" {
		for _, name := range secretFiles {
			opt.Secrets = append(opt.Secrets, filepath.Join(data, name))
		}
	}
	if opt.SQLite == "" && opt.InfluxRPC == "" {
		return errors.New("nothing to back up: give --data (an `up` data directory), --db or --influx-rpc")
	}
	m, err := backup.Create(cmd.Context(), opt)
	if err != nil {
		return err
	}
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	what := []string{}
	if m.SQLite != "" {
		what = append(what, "SQLite store")
	}
	if m.InfluxDB != "" {
		what = append(what, "InfluxDB ("+opt.InfluxRPC+")")
	}
	if len(m.Secrets) > 0 {
		what = append(what, fmt.Sprintf("%d secret files", len(m.Secrets)))
	}
	fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s: %s; %d files, %d bytes, manifest %s\n",
		out, strings.Join(what, ", "), len(m.Files), size, filepath.Join(out, backup.ManifestFile))
	return nil
}

func newRestoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Put a backup back into the data directory of a stopped installation",
		Long: `restore checks every file of the backup --from against its manifest, then
writes it into the data directory --data as "eldercare up" lays it out. It
refuses a data directory that a running eldercare holds, and one that already
holds data unless --force (which moves that data into DATA/replaced-<time>).
The InfluxDB part is restored through a temporary influxd on free loopback
ports, as InfluxDB 1.8 restores portable backups only online.

  eldercare restore --from /var/backups/eldercare/2026-12-01 --data ./data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings(cmd)
			if err != nil {
				return err
			}
			from, data := s.String("from"), s.String("data")
			if from == "" || data == "" {
				return errors.New("--from and --data: both required")
			}
			bin := s.String("influxd")
			if bin == "" {
				bin, _ = influxd.Find() // only needed when the backup holds InfluxDB; Restore says so
			}
			m, err := backup.Restore(cmd.Context(), backup.RestoreOptions{From: from, DataDir: data, Influxd: bin, Force: s.Bool("force")})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s (eldercare %s, taken %s) into %s; start it with eldercare up --data %s\n",
				from, m.Version, m.Created.Format("2006-01-02 15:04:05Z"), data, data)
			return nil
		},
	}
	f := cmd.Flags()
	f.String("from", "", "backup directory written by eldercare backup")
	f.String("data", "", "data directory of the stopped installation (created if missing)")
	f.String("influxd", "", "influxd binary for the InfluxDB restore (default: $ELDERCARE_INFLUXD, PATH, $GOPATH/bin)")
	f.Bool("force", false, "move existing data in --data aside (into DATA/replaced-<time>) instead of refusing")
	return cmd
}
