package registry

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// VersionTable is the goose version table of the registry migrations.
const VersionTable = "registry_version"

// Store keeps the registry in SQL (SQLite or PostgreSQL). It is safe for
// concurrent use. Hot paths read a [Snapshot] instead of the Store.
type Store struct {
	db *sqldb.DB
}

// Open migrates the registry tables in db (version table [VersionTable]) and
// returns a Store over it. The caller keeps ownership of db.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("registry migrations: %w", err)
	}
	if err := db.Migrate(ctx, sub, VersionTable); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Store{db: db}, nil
}

// dbtx is what *sql.DB and *sql.Tx have in common.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// nullable maps "" to SQL NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// msTime turns unix ms into a UTC time.
func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// Import upserts every site, room, bed, resident, kind setting, device, card, binding and credential of
// doc in one transaction. doc is validated first ([Document.Validate]) and must
// be self-contained: it may not refer to ids that only the database holds.
// Rows absent from doc are kept. Importing the same document twice changes
// nothing; a binding with the same device and from is updated in place. If
// the result would bind a device to two residents at one instant (for example
// against a binding made with [Store.Bind]), nothing is written and the error
// wraps [ErrOverlap].
func (s *Store) Import(ctx context.Context, doc *Document) error {
	if err := doc.Validate(); err != nil {
		return fmt.Errorf("import registry: %w", err)
	}
	return s.inTx(ctx, "import registry", func(tx *sql.Tx) error {
		up := func(what, query string, args ...any) error {
			if _, err := tx.ExecContext(ctx, s.db.Rebind(query), args...); err != nil {
				return fmt.Errorf("upsert %s: %w", what, err)
			}
			return nil
		}
		for _, x := range doc.SiteList() {
			if err := up("site "+x.ID, `INSERT INTO sites (id, name, time_zone) VALUES (?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone`,
				x.ID, x.Name, x.TimeZone); err != nil {
				return err
			}
		}
		for _, x := range doc.RoomList() {
			if err := up("room "+x.ID, `INSERT INTO rooms (id, site_id, name, ward, names) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, name = excluded.name,
				ward = excluded.ward, names = excluded.names`,
				x.ID, x.SiteID, x.Name, x.Ward, x.Names.encode()); err != nil {
				return err
			}
		}
		for _, x := range doc.BedList() {
			if err := up("bed "+x.ID, `INSERT INTO beds (id, room_id, site_id, name, nursing, bed_type) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id, site_id = excluded.site_id,
				name = excluded.name, nursing = excluded.nursing, bed_type = excluded.bed_type`,
				x.ID, x.RoomID, x.SiteID, x.Name, x.Nursing, x.Type); err != nil {
				return err
			}
		}
		for _, x := range doc.Residents {
			if err := s.putResident(ctx, tx, x); err != nil {
				return err
			}
		}
		for _, x := range doc.Devices {
			if err := up("device "+x.ID, `INSERT INTO devices (id, site_id, kind, name, bed_id, gateway_id, power, report_interval_ms, names)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, kind = excluded.kind,
				name = excluded.name, bed_id = excluded.bed_id, gateway_id = excluded.gateway_id,
				power = excluded.power, report_interval_ms = excluded.report_interval_ms, names = excluded.names`,
				x.ID, x.SiteID, x.Kind, x.Name, nullable(x.BedID), nullable(x.GatewayID), x.Power, x.ReportInterval.Milliseconds(), x.Names.encode()); err != nil {
				return err
			}
			if err := s.putLimits(ctx, tx, x); err != nil {
				return err
			}
		}
		for _, x := range doc.Kinds {
			if err := up("kind "+x.Kind, `INSERT INTO device_kinds (kind, report_interval_ms) VALUES (?, ?)
				ON CONFLICT (kind) DO UPDATE SET report_interval_ms = excluded.report_interval_ms`,
				x.Kind, x.ReportInterval.Milliseconds()); err != nil {
				return err
			}
		}
		for _, x := range doc.Cards {
			if err := up("card "+x.ID, `INSERT INTO meal_cards (id, resident_id) VALUES (?, ?)
				ON CONFLICT (id) DO UPDATE SET resident_id = excluded.resident_id`,
				x.ID, x.ResidentID); err != nil {
				return err
			}
		}
		for _, x := range doc.Credentials {
			if err := up("credential of "+x.Username, `INSERT INTO device_credentials (device_id, password_hash) VALUES (?, ?)
				ON CONFLICT (device_id) DO UPDATE SET password_hash = excluded.password_hash`,
				x.Username, x.PasswordHash); err != nil {
				return err
			}
		}
		touched := map[string]bool{}
		for _, x := range doc.Bindings {
			var to any
			if x.To != nil {
				to = x.To.UnixMilli()
			}
			if err := up("binding of device "+x.DeviceID, `INSERT INTO device_bindings (device_id, resident_id, from_ms, to_ms)
				VALUES (?, ?, ?, ?)
				ON CONFLICT (device_id, from_ms) DO UPDATE SET resident_id = excluded.resident_id, to_ms = excluded.to_ms`,
				x.DeviceID, x.ResidentID, x.From.UnixMilli(), to); err != nil {
				return err
			}
			touched[x.DeviceID] = true
		}
		for id := range touched {
			bs, err := s.bindings(ctx, tx, id)
			if err != nil {
				return err
			}
			for i := 1; i < len(bs); i++ {
				if bs[i].overlaps(bs[i-1]) {
					return fmt.Errorf("device %q: binding from %s overlaps binding from %s: %w",
						id, bs[i].From.Format(time.RFC3339Nano), bs[i-1].From.Format(time.RFC3339Nano), ErrOverlap)
				}
			}
		}
		return nil
	})
}

// inTx runs fn in a read-write transaction and commits it if fn succeeds.
func (s *Store) inTx(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", what, err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", what, err)
	}
	return nil
}

// readTx starts a read-only transaction that sees one consistent state.
func (s *Store) readTx(ctx context.Context) (*sql.Tx, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.db.Dialect == sqldb.Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	return s.db.BeginTx(ctx, opts)
}

// queryAll runs query and scans every row with scan.
func queryAll[T any](ctx context.Context, q dbtx, query string, scan func(*sql.Rows) (T, error), args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// one returns the single element of xs or ErrNotFound wrapped with what.
func one[T any](xs []T, err error, what string) (T, error) {
	var zero T
	if err != nil {
		return zero, fmt.Errorf("get %s: %w", what, err)
	}
	if len(xs) == 0 {
		return zero, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return xs[0], nil
}

// siteFilter appends a site condition when siteID is not empty.
func siteFilter(query, siteID string, args []any) (string, []any) {
	if siteID == "" {
		return query, args
	}
	return query + " WHERE site_id = ?", append(args, siteID)
}

const (
	selectSites     = `SELECT id, name, time_zone FROM sites`
	selectRooms     = `SELECT id, site_id, name, ward, names FROM rooms`
	selectBeds      = `SELECT id, room_id, site_id, name, nursing, bed_type FROM beds`
	selectResidents = `SELECT id, site_id, COALESCE(bed_id, ''), name, birth_year, vulnerable, notes, visit_cadence_days, names FROM residents`
	selectDevices   = `SELECT id, site_id, kind, name, COALESCE(bed_id, ''), COALESCE(gateway_id, ''), power, report_interval_ms, names FROM devices`
	selectKinds     = `SELECT kind, report_interval_ms FROM device_kinds`
	selectCards     = `SELECT id, resident_id FROM meal_cards`
	selectBindings  = `SELECT device_id, resident_id, from_ms, to_ms FROM device_bindings`
)

func scanSite(r *sql.Rows) (x Site, err error) {
	err = r.Scan(&x.ID, &x.Name, &x.TimeZone)
	return x, err
}

func scanRoom(r *sql.Rows) (x Room, err error) {
	var names string
	if err = r.Scan(&x.ID, &x.SiteID, &x.Name, &x.Ward, &names); err != nil {
		return x, err
	}
	x.Names, err = decodeNames(names)
	return x, err
}

func scanBed(r *sql.Rows) (x Bed, err error) {
	err = r.Scan(&x.ID, &x.RoomID, &x.SiteID, &x.Name, &x.Nursing, &x.Type)
	return x, err
}

func scanResident(r *sql.Rows) (x Resident, err error) {
	var names string
	if err = r.Scan(&x.ID, &x.SiteID, &x.BedID, &x.Name, &x.BirthYear, &x.Vulnerable, &x.Notes, &x.VisitCadenceDays, &names); err != nil {
		return x, err
	}
	x.Names, err = decodeNames(names)
	return x, err
}

func scanDevice(r *sql.Rows) (x Device, err error) {
	var ms int64
	var names string
	if err = r.Scan(&x.ID, &x.SiteID, &x.Kind, &x.Name, &x.BedID, &x.GatewayID, &x.Power, &ms, &names); err != nil {
		return x, err
	}
	x.ReportInterval = time.Duration(ms) * time.Millisecond
	x.Names, err = decodeNames(names)
	return x, err
}

func scanKind(r *sql.Rows) (x KindSetting, err error) {
	var ms int64
	err = r.Scan(&x.Kind, &ms)
	x.ReportInterval = time.Duration(ms) * time.Millisecond
	return x, err
}

// KindSettings returns the report intervals set per kind, ordered by kind.
func (s *Store) KindSettings(ctx context.Context) ([]KindSetting, error) {
	xs, err := queryAll(ctx, s.db, selectKinds+" ORDER BY kind", scanKind)
	if err != nil {
		return nil, fmt.Errorf("list kind settings: %w", err)
	}
	return xs, nil
}

func scanCard(r *sql.Rows) (x MealCard, err error) {
	err = r.Scan(&x.ID, &x.ResidentID)
	return x, err
}

func scanBinding(r *sql.Rows) (x Binding, err error) {
	var from int64
	var to sql.NullInt64
	if err = r.Scan(&x.DeviceID, &x.ResidentID, &from, &to); err != nil {
		return x, err
	}
	x.From = msTime(from)
	if to.Valid {
		t := msTime(to.Int64)
		x.To = &t
	}
	return x, nil
}

// Sites returns every site ordered by id.
func (s *Store) Sites(ctx context.Context) ([]Site, error) {
	xs, err := queryAll(ctx, s.db, selectSites+" ORDER BY id", scanSite)
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	return xs, nil
}

// Site returns one site, or an error wrapping [ErrNotFound].
func (s *Store) Site(ctx context.Context, id string) (Site, error) {
	xs, err := queryAll(ctx, s.db, s.db.Rebind(selectSites+" WHERE id = ?"), scanSite, id)
	return one(xs, err, fmt.Sprintf("site %q", id))
}

// Rooms returns the rooms of a site ("" = all sites) ordered by id.
func (s *Store) Rooms(ctx context.Context, siteID string) ([]Room, error) {
	q, args := siteFilter(selectRooms, siteID, nil)
	xs, err := queryAll(ctx, s.db, s.db.Rebind(q+" ORDER BY id"), scanRoom, args...)
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	return xs, nil
}

// Beds returns the beds of a site ("" = all sites) ordered by id.
func (s *Store) Beds(ctx context.Context, siteID string) ([]Bed, error) {
	q, args := siteFilter(selectBeds, siteID, nil)
	xs, err := queryAll(ctx, s.db, s.db.Rebind(q+" ORDER BY id"), scanBed, args...)
	if err != nil {
		return nil, fmt.Errorf("list beds: %w", err)
	}
	return xs, nil
}

// Residents returns the residents of a site ("" = all sites) ordered by id.
func (s *Store) Residents(ctx context.Context, siteID string) ([]Resident, error) {
	q, args := siteFilter(selectResidents, siteID, nil)
	xs, err := queryAll(ctx, s.db, s.db.Rebind(q+" ORDER BY id"), scanResident, args...)
	if err == nil {
		err = s.attachCare(ctx, s.db, xs)
	}
	if err != nil {
		return nil, fmt.Errorf("list residents: %w", err)
	}
	return xs, nil
}

// Resident returns one resident, or an error wrapping [ErrNotFound].
func (s *Store) Resident(ctx context.Context, id string) (Resident, error) {
	xs, err := queryAll(ctx, s.db, s.db.Rebind(selectResidents+" WHERE id = ?"), scanResident, id)
	if err == nil {
		err = s.attachCare(ctx, s.db, xs)
	}
	return one(xs, err, fmt.Sprintf("resident %q", id))
}

// Devices returns the devices of a site ("" = all sites) ordered by id.
func (s *Store) Devices(ctx context.Context, siteID string) ([]Device, error) {
	q, args := siteFilter(selectDevices, siteID, nil)
	xs, err := queryAll(ctx, s.db, s.db.Rebind(q+" ORDER BY id"), scanDevice, args...)
	if err == nil {
		err = s.attachLimits(ctx, s.db, xs)
	}
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return xs, nil
}

// Device returns one device, or an error wrapping [ErrNotFound].
func (s *Store) Device(ctx context.Context, id string) (Device, error) {
	xs, err := queryAll(ctx, s.db, s.db.Rebind(selectDevices+" WHERE id = ?"), scanDevice, id)
	if err == nil {
		err = s.attachLimits(ctx, s.db, xs)
	}
	return one(xs, err, fmt.Sprintf("device %q", id))
}

// Cards returns every meal card ordered by id.
func (s *Store) Cards(ctx context.Context) ([]MealCard, error) {
	xs, err := queryAll(ctx, s.db, selectCards+" ORDER BY id", scanCard)
	if err != nil {
		return nil, fmt.Errorf("list cards: %w", err)
	}
	return xs, nil
}

// Bindings returns the bindings of a device ("" = all devices) ordered by
// device and from.
func (s *Store) Bindings(ctx context.Context, deviceID string) ([]Binding, error) {
	xs, err := s.bindings(ctx, s.db, deviceID)
	if err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	return xs, nil
}

func (s *Store) bindings(ctx context.Context, q dbtx, deviceID string) ([]Binding, error) {
	query, args := selectBindings, []any(nil)
	if deviceID != "" {
		query, args = query+" WHERE device_id = ?", append(args, deviceID)
	}
	return queryAll(ctx, q, s.db.Rebind(query+" ORDER BY device_id, from_ms"), scanBinding, args...)
}

// Bind binds the device to the resident from `from` on (millisecond
// resolution), with no end. An open binding of the device that started
// earlier is closed at from; one that started at from is given the new
// resident; one of the same resident is kept as it is. Device and resident
// must exist (else an error wrapping [ErrNotFound]) and be on one site. A
// binding that starts later than from, or a closed binding that ends after
// from, is a conflict wrapping [ErrOverlap]: close or correct it first.
func (s *Store) Bind(ctx context.Context, deviceID, residentID string, from time.Time) error {
	what := fmt.Sprintf("bind device %q to resident %q", deviceID, residentID)
	fromMS := from.UnixMilli()
	return s.inTx(ctx, what, func(tx *sql.Tx) error {
		var devSite, resSite string
		err := tx.QueryRowContext(ctx, s.db.Rebind("SELECT site_id FROM devices WHERE id = ?"), deviceID).Scan(&devSite)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("device %q: %w", deviceID, ErrNotFound)
		} else if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, s.db.Rebind("SELECT site_id FROM residents WHERE id = ?"), residentID).Scan(&resSite)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("resident %q: %w", residentID, ErrNotFound)
		} else if err != nil {
			return err
		}
		if devSite != resSite {
			return fmt.Errorf("device is on site %q, resident on site %q", devSite, resSite)
		}
		bs, err := s.bindings(ctx, tx, deviceID)
		if err != nil {
			return err
		}
		for _, b := range bs {
			bFrom := b.From.UnixMilli()
			switch {
			case b.To == nil && b.ResidentID == residentID && bFrom <= fromMS:
				return nil // already bound
			case b.To == nil && bFrom == fromMS:
				_, err := tx.ExecContext(ctx, s.db.Rebind(
					"UPDATE device_bindings SET resident_id = ? WHERE device_id = ? AND from_ms = ?"),
					residentID, deviceID, fromMS)
				return err
			case b.To == nil && bFrom < fromMS:
				if _, err := tx.ExecContext(ctx, s.db.Rebind(
					"UPDATE device_bindings SET to_ms = ? WHERE device_id = ? AND from_ms = ?"),
					fromMS, deviceID, bFrom); err != nil {
					return err
				}
			case bFrom >= fromMS || b.To.UnixMilli() > fromMS:
				return fmt.Errorf("binding of resident %q from %s: %w", b.ResidentID, b.From.Format(time.RFC3339Nano), ErrOverlap)
			}
		}
		_, err = tx.ExecContext(ctx, s.db.Rebind(
			"INSERT INTO device_bindings (device_id, resident_id, from_ms, to_ms) VALUES (?, ?, ?, NULL)"),
			deviceID, residentID, fromMS)
		return err
	})
}

// Unbind closes the device's open binding at `at` (millisecond resolution).
// It returns an error wrapping [ErrNotFound] when the device has no open
// binding, and an error when at is not after the binding's start.
func (s *Store) Unbind(ctx context.Context, deviceID string, at time.Time) error {
	what := fmt.Sprintf("unbind device %q", deviceID)
	atMS := at.UnixMilli()
	return s.inTx(ctx, what, func(tx *sql.Tx) error {
		var fromMS int64
		err := tx.QueryRowContext(ctx, s.db.Rebind(
			"SELECT from_ms FROM device_bindings WHERE device_id = ? AND to_ms IS NULL"), deviceID).Scan(&fromMS)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("open binding of device %q: %w", deviceID, ErrNotFound)
		} else if err != nil {
			return err
		}
		if atMS <= fromMS {
			return fmt.Errorf("%s is not after the binding's start %s",
				msTime(atMS).Format(time.RFC3339Nano), msTime(fromMS).Format(time.RFC3339Nano))
		}
		_, err = tx.ExecContext(ctx, s.db.Rebind(
			"UPDATE device_bindings SET to_ms = ? WHERE device_id = ? AND from_ms = ?"), atMS, deviceID, fromMS)
		return err
	})
}
