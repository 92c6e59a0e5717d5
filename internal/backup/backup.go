// Package backup writes and restores a consistent snapshot of a single-site
// installation (the data directory of `eldercare up`): the SQLite store, the
// InfluxDB that `up` manages, and the installation's secrets, in one
// directory with a manifest of SHA-256 checksums.
//
// The SQLite store is copied with VACUUM INTO, which reads one transaction's
// snapshot, so rows written while the backup runs are either wholly in it or
// not at all (a file copy of a WAL database is not: it can miss committed
// rows still in the -wal file). InfluxDB 1.8 is copied with its own backup
// protocol, `influxd backup -portable -host RPC-ADDRESS`, against the
// instance's RPC bind address (https://docs.influxdata.com/influxdb/v1.8/administration/backup_and_restore/).
// PostgreSQL and an external InfluxDB are backed up with their native tools
// (pg_dump, influxd backup), see docs/operations.md.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// ManifestFile is the manifest's name inside a backup directory.
const ManifestFile = "manifest.json"

// Names inside a backup directory.
const (
	sqliteName  = "eldercare.db"
	influxName  = "influxdb"
	secretsName = "secrets"
)

// Manifest describes a backup directory.
type Manifest struct {
	// Format is FormatVersion.
	Format int `json:"format"`
	// Version and Commit of the eldercare binary that wrote the backup.
	Version string `json:"version"`
	Commit  string `json:"commit"`
	// Created is when the backup started (UTC).
	Created time.Time `json:"created"`
	// SQLite is the store's snapshot file, relative to the directory; "" when none.
	SQLite string `json:"sqlite,omitempty"`
	// InfluxDB is the directory of the portable InfluxDB backup; "" when none.
	InfluxDB string `json:"influxdb,omitempty"`
	// Secrets are the installation's secret files (API token, InfluxDB accounts), relative paths.
	Secrets []string `json:"secrets,omitempty"`
	// Files lists every file of the backup but the manifest, with its size in bytes and SHA-256 (hex).
	Files []File `json:"files"`
}

// File is one file of a backup.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Options configures Create. Out is required, and at least one of SQLite and InfluxRPC.
type Options struct {
	// Out is the backup directory; it must not exist or be empty. It is created with mode 0700, its files 0600.
	Out string
	// SQLite is the path of the live SQLite store; "" skips it.
	SQLite string
	// InfluxRPC is the RPC bind address (host:port) of the InfluxDB 1.8 to back up; "" skips InfluxDB.
	InfluxRPC string
	// Influxd is the influxd binary that runs `influxd backup`; required with InfluxRPC.
	Influxd string
	// Secrets are files copied as they are (the API token, the InfluxDB accounts); missing ones are skipped.
	Secrets []string
	// Version and Commit go into the manifest.
	Version, Commit string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Create writes a backup as opt says and returns its manifest. Errors name the step that failed (snapshot of the
// store, influxd backup with the tail of its output, or writing a file); a failed backup leaves Out incomplete and
// without a manifest, so Restore refuses it.
func Create(ctx context.Context, opt Options) (*Manifest, error) {
	if opt.Out == "" {
		return nil, errors.New("backup: no output directory")
	}
	if opt.SQLite == "" && opt.InfluxRPC == "" {
		return nil, errors.New("backup: nothing to back up (no SQLite store and no InfluxDB)")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if entries, err := os.ReadDir(opt.Out); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("backup: %s is not empty; give a new directory", opt.Out)
	}
	if err := os.MkdirAll(opt.Out, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	m := &Manifest{Format: FormatVersion, Version: opt.Version, Commit: opt.Commit, Created: opt.Now().UTC()}
	if opt.SQLite != "" {
		if err := snapshotSQLite(ctx, opt.SQLite, filepath.Join(opt.Out, sqliteName)); err != nil {
			return nil, err
		}
		m.SQLite = sqliteName
	}
	if opt.InfluxRPC != "" {
		if opt.Influxd == "" {
			return nil, errors.New("backup: no influxd binary for the InfluxDB backup")
		}
		out, err := exec.CommandContext(ctx, opt.Influxd, "backup", "-portable", "-host", opt.InfluxRPC, filepath.Join(opt.Out, influxName)).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("backup: influxd backup -portable -host %s: %w\n%s", opt.InfluxRPC, err, tail(out))
		}
		m.InfluxDB = influxName
	}
	for _, src := range opt.Secrets {
		b, err := os.ReadFile(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		rel := filepath.ToSlash(filepath.Join(secretsName, filepath.Base(src)))
		if err := os.MkdirAll(filepath.Join(opt.Out, secretsName), 0o700); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		if err := os.WriteFile(filepath.Join(opt.Out, rel), b, 0o600); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		m.Secrets = append(m.Secrets, rel)
	}
	files, err := checksums(opt.Out)
	if err != nil {
		return nil, err
	}
	m.Files = files
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(opt.Out, ManifestFile), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("backup: write manifest: %w", err)
	}
	return m, nil
}

// snapshotSQLite writes a consistent copy of the live store at src into dst with VACUUM INTO.
func snapshotSQLite(ctx context.Context, src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("backup: SQLite store: %w", err)
	}
	// VACUUM INTO wants a missing or empty file; an empty one made here keeps mode 0600.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f.Close()
	db, err := sqldb.Open(ctx, "sqlite:"+src)
	if err != nil {
		return fmt.Errorf("backup: SQLite store: %w", err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("backup: VACUUM INTO %s: %w", dst, err)
	}
	return nil
}

// checksums lists every regular file under dir (but the manifest) with its size and SHA-256, sorted by path, and
// makes it private (0600; directories 0700), whatever mode the tool that wrote it chose.
func checksums(dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == ManifestFile {
			return err
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return err
		}
		sum, size, err := hashFile(p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: checksums: %w", err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Verify reads the manifest of the backup in dir and checks every file's size and SHA-256, and that no file is
// missing or unlisted. Errors list every mismatch.
func Verify(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w (not a complete backup)", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("backup %s: manifest: %w", dir, err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("backup %s: manifest format %d, this binary reads %d", dir, m.Format, FormatVersion)
	}
	var errs []error
	listed := map[string]bool{}
	for _, f := range m.Files {
		listed[f.Path] = true
		sum, size, err := hashFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		switch {
		case err != nil:
			errs = append(errs, err)
		case size != f.Size || sum != f.SHA256:
			errs = append(errs, fmt.Errorf("%s: size %d sha256 %s, manifest says %d %s", f.Path, size, sum, f.Size, f.SHA256))
		}
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel = filepath.ToSlash(rel); rel != ManifestFile && !listed[rel] {
			errs = append(errs, fmt.Errorf("%s: not in the manifest", rel))
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("backup %s does not match its manifest: %w", dir, err)
	}
	return &m, nil
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2048 {
		s = "..." + s[len(s)-2048:]
	}
	return s
}
