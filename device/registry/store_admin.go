package registry

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The admin pages' writes (issue 13, onboarding). Every write is checked by
// [Document.Validate], the YAML import's validation, on a document holding
// the row and the site it belongs to as the store has them: a form and the
// YAML import refuse the same input with the same message (the path
// differs: "sites[0].timezone" in both, "residents[2].name" in the YAML,
// "resident.name" from [Store.PutResident]). [FieldErrors] splits such an
// error into a message per form field.

// FieldError is one problem of a write: the form field it concerns (the
// last path element naming a field, for example "timezone", "medication")
// and the validation message without its path.
type FieldError struct {
	Field   string
	Path    string
	Message string
}

// FieldErrors splits err (a joined validation error, one "path: message"
// per line) into its problems. A line without a path gets field "form".
func FieldErrors(err error) []FieldError {
	if err == nil {
		return nil
	}
	var out []FieldError
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		path, msg, ok := strings.Cut(line, ": ")
		if !ok || strings.ContainsAny(path, " \"") {
			out = append(out, FieldError{Field: "form", Message: line})
			continue
		}
		out = append(out, FieldError{Field: fieldOf(path), Path: path, Message: msg})
	}
	return out
}

// fieldOf returns the form field of a validation path: the element after
// the last element naming a row ("sites[0].rooms[1].ward" -> "ward",
// "resident.medication[0].time" -> "medication"), else the last element.
func fieldOf(path string) string {
	parts := strings.Split(path, ".")
	rowAt := -1
	for i, p := range parts {
		base, _, _ := strings.Cut(p, "[")
		switch base {
		case "sites", "rooms", "beds", "residents", "devices", "cards", "credentials", "bindings", "site", "room", "bed", "resident", "device", "card":
			if strings.Contains(p, "[") || i == 0 {
				rowAt = i
			}
		}
	}
	if rowAt >= 0 && rowAt+1 < len(parts) {
		f, _, _ := strings.Cut(parts[rowAt+1], "[")
		return f
	}
	f, _, _ := strings.Cut(parts[len(parts)-1], "[")
	return f
}

// siteDoc loads site siteID as a Document (the site with its rooms and
// beds, its residents and devices), or an empty Document when it does not
// exist.
func (s *Store) siteDoc(ctx context.Context, siteID string) (*Document, error) {
	doc := &Document{}
	site, err := s.Site(ctx, siteID)
	if errors.Is(err, ErrNotFound) {
		return doc, nil
	} else if err != nil {
		return nil, err
	}
	rooms, err := s.Rooms(ctx, siteID)
	if err != nil {
		return nil, err
	}
	beds, err := s.Beds(ctx, siteID)
	if err != nil {
		return nil, err
	}
	spec := SiteSpec{ID: site.ID, Name: site.Name, TimeZone: site.TimeZone}
	for _, r := range rooms {
		rs := RoomSpec{ID: r.ID, Name: r.Name, Ward: r.Ward, Names: r.Names}
		for _, b := range beds {
			if b.RoomID == r.ID {
				rs.Beds = append(rs.Beds, BedSpec{ID: b.ID, Name: b.Name, Nursing: b.Nursing, Type: b.Type})
			}
		}
		spec.Rooms = append(spec.Rooms, rs)
	}
	doc.Sites = []SiteSpec{spec}
	if doc.Residents, err = s.Residents(ctx, siteID); err != nil {
		return nil, err
	}
	if doc.Devices, err = s.Devices(ctx, siteID); err != nil {
		return nil, err
	}
	return doc, nil
}

// PutSite creates or updates site x (name and IANA zone; its rooms are
// kept). Errors: the YAML import's messages ("sites[0].timezone: unknown
// IANA zone ..."), database errors.
func (s *Store) PutSite(ctx context.Context, x Site) error {
	doc, err := s.siteDoc(ctx, x.ID)
	if err != nil {
		return err
	}
	if len(doc.Sites) == 0 {
		doc.Sites = []SiteSpec{{}}
	}
	doc.Sites[0].ID, doc.Sites[0].Name, doc.Sites[0].TimeZone = x.ID, x.Name, x.TimeZone
	if err := doc.Validate(); err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO sites (id, name, time_zone) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, time_zone = excluded.time_zone`), x.ID, x.Name, x.TimeZone)
	if err != nil {
		return fmt.Errorf("put site %s: %w", x.ID, err)
	}
	return nil
}

// siteOf returns the site of row id in table ("" when absent).
func (s *Store) siteOf(ctx context.Context, table, id string) (string, error) {
	var site string
	err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT site_id FROM `+table+` WHERE id = ?`), id).Scan(&site)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return site, err
}

// PutRoom creates or updates room x (name, ward, display names) on its
// site; its beds are kept. A room stays on its site: moving it is refused.
// Errors: "room.site: unknown site", "room.id: ... is on site ...", the
// YAML import's messages, database errors.
func (s *Store) PutRoom(ctx context.Context, x Room) error {
	doc, err := s.siteDoc(ctx, x.SiteID)
	if err != nil {
		return err
	}
	if len(doc.Sites) == 0 {
		return fmt.Errorf("room.site: unknown site %q", x.SiteID)
	}
	if other, err := s.siteOf(ctx, "rooms", x.ID); err != nil {
		return err
	} else if other != "" && other != x.SiteID {
		return fmt.Errorf("room.id: duplicate id %q (a room of site %q)", x.ID, other)
	}
	spec := RoomSpec{ID: x.ID, Name: x.Name, Ward: x.Ward, Names: x.Names}
	rooms := doc.Sites[0].Rooms
	if i := slices.IndexFunc(rooms, func(r RoomSpec) bool { return r.ID == x.ID }); i >= 0 {
		spec.Beds = rooms[i].Beds
		rooms[i] = spec
	} else {
		doc.Sites[0].Rooms = append(rooms, spec)
	}
	if err := doc.Validate(); err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO rooms (id, site_id, name, ward, names) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, ward = excluded.ward, names = excluded.names`),
		x.ID, x.SiteID, x.Name, x.Ward, x.Names.encode())
	if err != nil {
		return fmt.Errorf("put room %s: %w", x.ID, err)
	}
	return nil
}

// PutBed creates or updates bed x (name, room, type) on the site of its
// room. The type of a new bed is x.Type ("" = ordinary); a change of an
// existing bed's type goes through [Store.ChangeBedType] with by (required
// then) and reason, so it keeps its history. Errors: "bed.room: unknown
// room", the YAML import's messages, ChangeBedType's, database errors.
func (s *Store) PutBed(ctx context.Context, x Bed, by, reason string, at time.Time) error {
	if x.Type == "" {
		x.Type = BedOrdinary
	}
	roomSite, err := s.siteOf(ctx, "rooms", x.RoomID)
	if err != nil {
		return err
	}
	if roomSite == "" {
		return fmt.Errorf("bed.room: unknown room %q", x.RoomID)
	}
	x.SiteID = roomSite
	var oldType, oldRoom string
	err = s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT bed_type, room_id FROM beds WHERE id = ?`), x.ID).Scan(&oldType, &oldRoom)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	doc, err := s.siteDoc(ctx, x.SiteID)
	if err != nil {
		return err
	}
	if exists && oldRoom != x.RoomID {
		if other, _ := s.siteOf(ctx, "beds", x.ID); other != x.SiteID {
			return fmt.Errorf("bed.id: duplicate id %q (a bed of site %q)", x.ID, other)
		}
	}
	rooms := doc.Sites[0].Rooms
	for i := range rooms {
		rooms[i].Beds = slices.DeleteFunc(rooms[i].Beds, func(b BedSpec) bool { return b.ID == x.ID })
		if rooms[i].ID == x.RoomID {
			rooms[i].Beds = append(rooms[i].Beds, BedSpec{ID: x.ID, Name: x.Name, Type: x.Type, Nursing: x.Type == BedNursing})
		}
	}
	if err := doc.Validate(); err != nil {
		return err
	}
	if exists && oldType != x.Type {
		if err := s.ChangeBedType(ctx, x.ID, x.Type, by, reason, at); err != nil {
			return err
		}
	}
	_, err = s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO beds (id, room_id, site_id, name, nursing, bed_type) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id, name = excluded.name`),
		x.ID, x.RoomID, x.SiteID, x.Name, x.Type == BedNursing, x.Type)
	if err != nil {
		return fmt.Errorf("put bed %s: %w", x.ID, err)
	}
	return nil
}

// PutCard creates a meal card or gives it to another resident. Errors: the
// YAML import's messages ("cards[0].resident: unknown resident ..."),
// database errors.
func (s *Store) PutCard(ctx context.Context, x MealCard) error {
	doc := &Document{}
	if x.ResidentID != "" {
		site, err := s.siteOf(ctx, "residents", x.ResidentID)
		if err != nil {
			return err
		}
		if site != "" {
			if doc, err = s.siteDoc(ctx, site); err != nil {
				return err
			}
		}
	}
	doc.Cards = []MealCard{x}
	if err := doc.Validate(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO meal_cards (id, resident_id) VALUES (?, ?)
		ON CONFLICT (id) DO UPDATE SET resident_id = excluded.resident_id`), x.ID, x.ResidentID)
	if err != nil {
		return fmt.Errorf("put card %s: %w", x.ID, err)
	}
	return nil
}

// SetNames sets the display names of a room, resident or device (table
// "rooms", "residents" or "devices"), checked as the YAML import checks
// them. Errors wrap [ErrNotFound] for an unknown row.
func (s *Store) SetNames(ctx context.Context, table, id string, n Names) error {
	switch table {
	case "rooms", "residents", "devices":
	default:
		return fmt.Errorf("display names: no table %q", table)
	}
	var v validator
	v.names(strings.TrimSuffix(table, "s")+".names", n)
	if err := errors.Join(v.errs...); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE `+table+` SET names = ? WHERE id = ?`), n.encode(), id)
	if err != nil {
		return fmt.Errorf("set names of %s: %w", id, err)
	}
	if k, err := res.RowsAffected(); err == nil && k == 0 {
		return fmt.Errorf("%s %q: %w", strings.TrimSuffix(table, "s"), id, ErrNotFound)
	}
	return nil
}

// GatewayPasswordLen is the length of a generated gateway password.
const GatewayPasswordLen = 24

// PutGateway creates or updates gateway device dev (kind gateway) and gives
// it a new MQTT credential: a generated password of GatewayPasswordLen
// characters, stored only as its argon2id hash. The password is returned
// to be shown once; a second call replaces it. Errors: as [Store.PutDevice].
func (s *Store) PutGateway(ctx context.Context, dev Device) (password string, err error) {
	dev.Kind = KindGateway
	if err := s.PutDevice(ctx, dev); err != nil {
		return "", err
	}
	password, err = generatePassword(GatewayPasswordLen)
	if err != nil {
		return "", err
	}
	hash, err := HashPasswordArgon2id(password)
	if err != nil {
		return "", err
	}
	_, err = s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO device_credentials (device_id, password_hash) VALUES (?, ?)
		ON CONFLICT (device_id) DO UPDATE SET password_hash = excluded.password_hash`), dev.ID, hash)
	if err != nil {
		return "", fmt.Errorf("credential of gateway %s: %w", dev.ID, err)
	}
	return password, nil
}

// generatePassword returns n characters from an alphabet without look-alikes.
func generatePassword(n int) (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}

// Retired is a row retired from the registry (see [Store.Retire]).
type Retired struct {
	Kind   string          `json:"kind"`
	ID     string          `json:"id"`
	At     time.Time       `json:"at"`
	By     string          `json:"by"`
	Reason string          `json:"reason,omitempty"`
	Record json.RawMessage `json:"record"`
}

// Retirable kinds of [Store.Retire].
var RetireKinds = []string{"site", "room", "bed", "resident", "device", "card"}

// ErrInUse is returned, wrapped with what still uses it, when a row to
// retire is still in use (a room with beds, a bed held by a resident).
var ErrInUse = errors.New("still in use")

// Retire removes a row from the registry (kind one of [RetireKinds]) and
// keeps it, with everything removed with it, as a JSON record with by,
// at and reason (see [Store.RetiredRows]). A resident's open device
// bindings, medication schedule, safe zones and meal cards go with it; a
// device's bindings, limits and credential go with it. A site with rooms,
// residents or devices, a room with beds, a bed held by a resident or with
// a device installed, or a gateway with devices behind it is refused with
// an error wrapping [ErrInUse]; an unknown row with one wrapping
// [ErrNotFound]. by is required.
func (s *Store) Retire(ctx context.Context, kind, id, by, reason string, at time.Time) error {
	if strings.TrimSpace(by) == "" {
		return errors.New("retire: by: required (who retires it)")
	}
	var v validator
	v.name("reason", reason, false)
	if err := errors.Join(v.errs...); err != nil {
		return err
	}
	return s.inTx(ctx, "retire "+kind+" "+id, func(tx *sql.Tx) error {
		count := func(q string, args ...any) (int, error) {
			var n int
			err := tx.QueryRowContext(ctx, s.db.Rebind(q), args...).Scan(&n)
			return n, err
		}
		inUse := func(q, what string) error {
			n, err := count(q, id)
			if err != nil {
				return err
			}
			if n > 0 {
				return fmt.Errorf("%s %q has %d %s: %w", kind, id, n, what, ErrInUse)
			}
			return nil
		}
		exec := func(q string, args ...any) error {
			_, err := tx.ExecContext(ctx, s.db.Rebind(q), args...)
			return err
		}
		record := map[string]any{}
		var table string
		switch kind {
		case "site":
			table = "sites"
			for _, c := range []struct{ q, what string }{
				{`SELECT COUNT(*) FROM rooms WHERE site_id = ?`, "rooms"},
				{`SELECT COUNT(*) FROM residents WHERE site_id = ?`, "residents"},
				{`SELECT COUNT(*) FROM devices WHERE site_id = ?`, "devices"},
			} {
				if err := inUse(c.q, c.what); err != nil {
					return err
				}
			}
			xs, err := queryAll(ctx, tx, s.db.Rebind(selectSites+" WHERE id = ?"), scanSite, id)
			if err != nil || len(xs) == 0 {
				return notFound(kind, id, err)
			}
			record["site"] = xs[0]
		case "room":
			table = "rooms"
			if err := inUse(`SELECT COUNT(*) FROM beds WHERE room_id = ?`, "beds"); err != nil {
				return err
			}
			xs, err := queryAll(ctx, tx, s.db.Rebind(selectRooms+" WHERE id = ?"), scanRoom, id)
			if err != nil || len(xs) == 0 {
				return notFound(kind, id, err)
			}
			record["room"] = xs[0]
		case "bed":
			table = "beds"
			if err := inUse(`SELECT COUNT(*) FROM residents WHERE bed_id = ?`, "residents"); err != nil {
				return err
			}
			if err := inUse(`SELECT COUNT(*) FROM devices WHERE bed_id = ?`, "devices"); err != nil {
				return err
			}
			xs, err := queryAll(ctx, tx, s.db.Rebind(selectBeds+" WHERE id = ?"), scanBed, id)
			if err != nil || len(xs) == 0 {
				return notFound(kind, id, err)
			}
			record["bed"] = xs[0]
			hist, err := queryAll(ctx, tx, s.db.Rebind(`SELECT bed_id, at_ms, from_type, to_type, changed_by, reason FROM bed_type_changes WHERE bed_id = ? ORDER BY at_ms`),
				func(r *sql.Rows) (x BedTypeChange, err error) {
					var ms int64
					err = r.Scan(&x.BedID, &ms, &x.From, &x.To, &x.By, &x.Reason)
					x.At = msTime(ms)
					return x, err
				}, id)
			if err != nil {
				return err
			}
			record["type_history"] = hist
			if err := exec(`DELETE FROM bed_type_changes WHERE bed_id = ?`, id); err != nil {
				return err
			}
		case "resident":
			table = "residents"
			xs, err := queryAll(ctx, tx, s.db.Rebind(selectResidents+" WHERE id = ?"), scanResident, id)
			if err == nil {
				err = s.attachCare(ctx, tx, xs)
			}
			if err != nil || len(xs) == 0 {
				return notFound(kind, id, err)
			}
			record["resident"] = xs[0]
			bs, err := queryAll(ctx, tx, s.db.Rebind(selectBindings+" WHERE resident_id = ? ORDER BY device_id, from_ms"), scanBinding, id)
			if err != nil {
				return err
			}
			record["bindings"] = closeAt(bs, at)
			cards, err := queryAll(ctx, tx, s.db.Rebind(selectCards+" WHERE resident_id = ?"), scanCard, id)
			if err != nil {
				return err
			}
			record["cards"] = cards
			for _, q := range []string{`DELETE FROM device_bindings WHERE resident_id = ?`, `DELETE FROM meal_cards WHERE resident_id = ?`,
				`DELETE FROM medication_schedules WHERE resident_id = ?`, `DELETE FROM safe_zones WHERE resident_id = ?`} {
				if err := exec(q, id); err != nil {
					return err
				}
			}
		case "device":
			table = "devices"
			if err := inUse(`SELECT COUNT(*) FROM devices WHERE gateway_id = ?`, "devices behind it"); err != nil {
				return err
			}
			xs, err := queryAll(ctx, tx, s.db.Rebind(selectDevices+" WHERE id = ?"), scanDevice, id)
			if err == nil {
				err = s.attachLimits(ctx, tx, xs)
			}
			if err != nil || len(xs) == 0 {
				return notFound(kind, id, err)
			}
			record["device"] = xs[0]
			bs, err := s.bindings(ctx, tx, id)
			if err != nil {
				return err
			}
			record["bindings"] = closeAt(bs, at)
			var n int
			if n, err = count(`SELECT COUNT(*) FROM device_credentials WHERE device_id = ?`, id); err != nil {
				return err
			}
			record["had_credential"] = n > 0
			for _, q := range []string{`DELETE FROM device_bindings WHERE device_id = ?`, `DELETE FROM device_limits WHERE device_id = ?`,
				`DELETE FROM device_credentials WHERE device_id = ?`} {
				if err := exec(q, id); err != nil {
					return err
				}
			}
		case "card":
			table = "meal_cards"
			xs, err := queryAll(ctx, tx, s.db.Rebind(selectCards+" WHERE id = ?"), scanCard, id)
			if err != nil || len(xs) == 0 {
				return notFound(kind, id, err)
			}
			record["card"] = xs[0]
		default:
			return fmt.Errorf("retire: unknown kind %q (want one of %s)", kind, strings.Join(RetireKinds, ", "))
		}
		if err := exec(`DELETE FROM `+table+` WHERE id = ?`, id); err != nil {
			return err
		}
		b, err := json.Marshal(record)
		if err != nil {
			return err
		}
		return exec(`INSERT INTO registry_retired (kind, id, at_ms, retired_by, reason, record) VALUES (?, ?, ?, ?, ?, ?)`,
			kind, id, at.UnixMilli(), by, reason, string(b))
	})
}

// closeAt ends the open bindings of bs at at (for the retired record).
func closeAt(bs []Binding, at time.Time) []Binding {
	for i := range bs {
		if bs[i].To == nil && at.After(bs[i].From) {
			t := at.UTC()
			bs[i].To = &t
		}
	}
	return bs
}

func notFound(kind, id string, err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%s %q: %w", kind, id, ErrNotFound)
}

// RetiredRows returns the retired rows, newest first, at most limit
// (<= 0: 100).
func (s *Store) RetiredRows(ctx context.Context, limit int) ([]Retired, error) {
	if limit <= 0 {
		limit = 100
	}
	xs, err := queryAll(ctx, s.db, s.db.Rebind(`SELECT kind, id, at_ms, retired_by, reason, record FROM registry_retired ORDER BY at_ms DESC, kind, id LIMIT ?`),
		func(r *sql.Rows) (x Retired, err error) {
			var ms int64
			var rec string
			err = r.Scan(&x.Kind, &x.ID, &ms, &x.By, &x.Reason, &rec)
			x.At, x.Record = msTime(ms), json.RawMessage(rec)
			return x, err
		}, limit)
	if err != nil {
		return nil, fmt.Errorf("list retired rows: %w", err)
	}
	return xs, nil
}
