package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/eldercare-iot/eldercare/internal/influxd"
)

// LockFile is the file in a data directory that a running `eldercare up` holds an exclusive flock(2) on.
const LockFile = "eldercare.lock"

// ErrInUse is returned (wrapped) by LockDataDir and Restore when another process holds the data directory.
var ErrInUse = errors.New("data directory in use")

// LockDataDir creates dir (mode 0700) if missing and takes an exclusive, non-blocking flock(2) on dir/eldercare.lock,
// so two `up` never share a data directory and Restore never writes under a running one. The kernel drops the lock
// when the process ends. It returns the function that releases it. Errors: ErrInUse (wrapped) when another process
// holds it, or the directory or file cannot be created.
func LockDataDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by a running eldercare (stop it first)", ErrInUse, dir)
		}
		return nil, fmt.Errorf("data directory %s: lock %s: %w", dir, path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// From is the backup directory (written by Create).
	From string
	// DataDir is the data directory of the stopped installation to restore into (created if missing).
	DataDir string
	// Influxd is the influxd binary that runs `influxd restore`; required when the backup holds InfluxDB.
	Influxd string
	// Force moves an existing store and InfluxDB data aside (into DataDir/replaced-<time>) instead of refusing.
	Force bool
}

// Restore verifies the backup in opt.From against its manifest and puts it into opt.DataDir as `eldercare up`
// lays it out: the store as eldercare.db, the secrets beside it (0600), and the InfluxDB backup into
// DataDir/influxdb, through a temporary influxd on free loopback ports (InfluxDB 1.8 restores a portable backup
// only online: `influxd restore -portable -host RPC`), stopped afterwards.
//
// Errors: a backup that does not match its manifest; ErrInUse (wrapped) when a running eldercare holds DataDir;
// existing data in DataDir without Force; a failing influxd restore (with its output).
func Restore(ctx context.Context, opt RestoreOptions) (*Manifest, error) {
	m, err := Verify(opt.From)
	if err != nil {
		return nil, err
	}
	if m.InfluxDB != "" && opt.Influxd == "" {
		return nil, errors.New("restore: the backup holds InfluxDB but no influxd binary was given")
	}
	unlock, err := LockDataDir(opt.DataDir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer unlock()

	db := filepath.Join(opt.DataDir, sqliteName)
	influxDir := filepath.Join(opt.DataDir, influxName)
	var existing []string
	candidates := []string{db, db + "-wal", db + "-shm", influxDir}
	for _, rel := range m.Secrets {
		candidates = append(candidates, filepath.Join(opt.DataDir, filepath.Base(rel)))
	}
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			existing = append(existing, p)
		}
	}
	if len(existing) > 0 {
		if !opt.Force {
			return nil, fmt.Errorf("restore: %s already holds data (%v); restore into a new directory, or give --force to move it aside", opt.DataDir, existing)
		}
		aside := filepath.Join(opt.DataDir, "replaced-"+time.Now().UTC().Format("20060102T150405Z"))
		if err := os.MkdirAll(aside, 0o700); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		for _, p := range existing {
			if err := os.Rename(p, filepath.Join(aside, filepath.Base(p))); err != nil {
				return nil, fmt.Errorf("restore: move aside: %w", err)
			}
		}
	}
	if m.SQLite != "" {
		if err := copyFile(filepath.Join(opt.From, m.SQLite), db); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	for _, rel := range m.Secrets {
		if err := copyFile(filepath.Join(opt.From, filepath.FromSlash(rel)), filepath.Join(opt.DataDir, filepath.Base(rel))); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	if m.InfluxDB != "" {
		if err := restoreInflux(ctx, opt.Influxd, filepath.Join(opt.From, m.InfluxDB), influxDir); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// restoreInflux starts influxd on dataDir (authentication off, free loopback ports), restores the portable backup
// in from through its RPC address and stops it.
func restoreInflux(ctx context.Context, bin, from, dataDir string) error {
	srv, err := influxd.Start(ctx, influxd.Options{Bin: bin, DataDir: dataDir})
	if err != nil {
		return fmt.Errorf("restore: start a temporary InfluxDB: %w", err)
	}
	out, rerr := exec.CommandContext(ctx, bin, "restore", "-portable", "-host", srv.RPCAddr(), from).CombinedOutput()
	serr := srv.Stop()
	if rerr != nil {
		return fmt.Errorf("restore: influxd restore -portable: %w\n%s", rerr, tail(out))
	}
	if serr != nil {
		return fmt.Errorf("restore: stop the temporary InfluxDB: %w", serr)
	}
	return nil
}

// copyFile copies src to dst (created with mode 0600, never over an existing file).
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
