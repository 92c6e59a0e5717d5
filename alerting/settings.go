// Stage 3, store: recipients, rosters, escalation policies and flapping settings, stored and audited.

package alerting

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Setting kinds (alerting_settings.kind, settings_audit.kind).
const (
	KindRecipient = "recipient"
	KindRoster    = "roster"
	KindPolicy    = "policy"
	KindFlapping  = "flapping"
)

// Duration is a time.Duration written as a Go duration string ("3m",
// "90s") in YAML and JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// Recipient is a person who can be paged: a caregiver, nurse lead, manager
// or family contact. Stored as setting kind "recipient".
type Recipient struct {
	ID   string `json:"id" yaml:"id"`
	Name string `json:"name" yaml:"name"`
	// Role, e.g. caregiver, nurse_lead, manager, family; policy steps
	// address recipients by role ("role:nurse_lead").
	Role string `json:"role" yaml:"role"`
	// Sites limits role targets to these sites; empty: every site.
	Sites []string `json:"sites,omitempty" yaml:"sites,omitempty"`
	// Email is the address e-mail notifications go to ("" = none).
	Email string `json:"email,omitempty" yaml:"email,omitempty"`
	// ChatID is the recipient's id in the chat robot (mentioned in the
	// message, e.g. a WeCom user id or a DingTalk mobile number).
	ChatID string `json:"chat_id,omitempty" yaml:"chat_id,omitempty"`
	// Quiet, if set, holds back non-critical notifications.
	Quiet *QuietHours `json:"quiet,omitempty" yaml:"quiet,omitempty"`
}

// Validate reports every problem of r.
func (r Recipient) Validate() error {
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("recipient: id is required"))
	}
	if r.Email != "" && !strings.Contains(r.Email, "@") {
		errs = append(errs, fmt.Errorf("recipient %s: e-mail %q has no @", r.ID, r.Email))
	}
	if r.Quiet != nil {
		if err := r.Quiet.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("recipient %s: quiet hours: %w", r.ID, err))
		}
	}
	return errors.Join(errs...)
}

// Policy is an escalation policy: ordered steps, each After a delay from
// the alert's opening, and reminders every Repeat after the last step, until
// the alert is acknowledged or resolved. Stored as setting kind "policy".
//
// The first policy (by id order) whose Sites, Types and Severities all
// match an alert (an empty list matches everything) escalates it.
type Policy struct {
	ID         string   `json:"id" yaml:"id"`
	Sites      []string `json:"sites,omitempty" yaml:"sites,omitempty"`
	Types      []string `json:"types,omitempty" yaml:"types,omitempty"`
	Severities []string `json:"severities,omitempty" yaml:"severities,omitempty"`
	Steps      []Step   `json:"steps" yaml:"steps"`
	// Repeat is the reminder period after the last step (0 = no
	// reminders). A reminder goes to every recipient of every step.
	Repeat Duration `json:"repeat,omitempty" yaml:"repeat,omitempty"`
}

// Step is one escalation step.
type Step struct {
	// After is the delay from the alert's opening; non-decreasing along the
	// policy. A first step with After 0 is announced with the "opened"
	// notification itself.
	After Duration `json:"after" yaml:"after"`
	// Targets: "on_duty" (the recipients on duty in the site's roster at the
	// time of the step), "role:<role>" (every recipient with the role, for
	// the alert's site) or "recipient:<id>".
	Targets []string `json:"targets" yaml:"targets"`
}

// Validate reports every problem of p.
func (p Policy) Validate() error {
	var errs []error
	if p.ID == "" {
		errs = append(errs, errors.New("policy: id is required"))
	}
	if len(p.Steps) == 0 {
		errs = append(errs, fmt.Errorf("policy %s: no steps", p.ID))
	}
	for i, s := range p.Steps {
		if s.After < 0 || (i > 0 && s.After < p.Steps[i-1].After) {
			errs = append(errs, fmt.Errorf("policy %s: step %d: delay %s is negative or before the previous step's", p.ID, i, time.Duration(s.After)))
		}
		if len(s.Targets) == 0 {
			errs = append(errs, fmt.Errorf("policy %s: step %d has no targets", p.ID, i))
		}
		for _, t := range s.Targets {
			if t != "on_duty" && !strings.HasPrefix(t, "role:") && !strings.HasPrefix(t, "recipient:") {
				errs = append(errs, fmt.Errorf("policy %s: step %d: target %q: want on_duty, role:<role> or recipient:<id>", p.ID, i, t))
			}
		}
	}
	for _, sv := range p.Severities {
		if sv != SeverityCritical && sv != SeverityHigh && sv != SeverityWarning {
			errs = append(errs, fmt.Errorf("policy %s: severity %q", p.ID, sv))
		}
	}
	if p.Repeat < 0 || (p.Repeat > 0 && time.Duration(p.Repeat) < time.Second) {
		errs = append(errs, fmt.Errorf("policy %s: repeat %s: want 0 or at least 1s", p.ID, time.Duration(p.Repeat)))
	}
	return errors.Join(errs...)
}

func (p Policy) matches(a Alert) bool {
	ok := func(set []string, v string) bool { return len(set) == 0 || slices.Contains(set, v) }
	return ok(p.Sites, a.Site) && ok(p.Types, a.Type) && ok(p.Severities, a.Severity)
}

// Flapping: Transitions openings of alerts with the same key within Window
// are a flapping episode. The Transitions-th opening is announced once
// with event "repeating"; later openings in the episode are recorded but
// not notified (flap "suppressed"). Once no alert of the key opened for
// Window, the next one notifies normally. Critical alerts (fall, SOS) are
// never suppressed. Transitions 0 disables detection. Stored as setting
// kind "flapping", id "default".
type Flapping struct {
	Transitions int      `json:"transitions" yaml:"transitions"`
	Window      Duration `json:"window" yaml:"window"`
}

// DefaultFlapping: 4 openings within 30 min.
var DefaultFlapping = Flapping{Transitions: 4, Window: Duration(30 * time.Minute)}

// Validate reports every problem of f.
func (f Flapping) Validate() error {
	if f.Transitions < 0 || f.Transitions == 1 || (f.Transitions > 0 && f.Window <= 0) {
		return fmt.Errorf("flapping: transitions %d within %s: want 0 (off), or >= 2 with a positive window", f.Transitions, time.Duration(f.Window))
	}
	return nil
}

// Settings are the live alerting settings kept in the store.
type Settings struct {
	Recipients []Recipient `json:"recipients" yaml:"recipients"`
	Rosters    []Roster    `json:"rosters" yaml:"rosters"`
	Policies   []Policy    `json:"policies" yaml:"policies"`
	// Flapping nil: DefaultFlapping.
	Flapping *Flapping `json:"flapping,omitempty" yaml:"flapping,omitempty"`
}

// Validate reports every problem of s, including references to unknown
// recipients.
func (s Settings) Validate() error {
	var errs []error
	ids := map[string]bool{}
	for _, r := range s.Recipients {
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
		if ids[r.ID] {
			errs = append(errs, fmt.Errorf("recipient %s twice", r.ID))
		}
		ids[r.ID] = true
	}
	for _, r := range s.Rosters {
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, sh := range r.Shifts {
			for _, id := range sh.OnDuty {
				if !ids[id] {
					errs = append(errs, fmt.Errorf("roster %s shift %s: unknown recipient %q", r.Site, sh.Name, id))
				}
			}
		}
	}
	for _, p := range s.Policies {
		if err := p.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, st := range p.Steps {
			for _, t := range st.Targets {
				if id, ok := strings.CutPrefix(t, "recipient:"); ok && !ids[id] {
					errs = append(errs, fmt.Errorf("policy %s: unknown recipient %q", p.ID, id))
				}
			}
		}
	}
	if s.Flapping != nil {
		if err := s.Flapping.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParseSettings decodes YAML settings (fields as in [Settings]; unknown
// fields are an error) and validates them.
//
//	recipients:
//	  - {id: ana, name: Ana, role: caregiver, email: ana@example.org,
//	     quiet: {start: "22:00", end: "07:00", zone: Europe/Berlin}}
//	rosters:
//	  - site: demo
//	    zone: Europe/Berlin
//	    shifts:
//	      - {name: day, start: "07:00", end: "19:00", on_duty: [ana]}
//	policies:
//	  - id: default
//	    steps:
//	      - {after: 0s, targets: [on_duty]}
//	      - {after: 3m, targets: ["role:nurse_lead"]}
//	    repeat: 5m
func ParseSettings(b []byte) (Settings, error) {
	var s Settings
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return Settings{}, fmt.Errorf("alerting settings: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Settings{}, fmt.Errorf("alerting settings: %w", err)
	}
	return s, nil
}

// ImportSettings stores every recipient, roster, policy and the flapping
// setting of s (created or replaced; settings not in s are kept), each
// change audited under actor, all in one transaction.
func (m *Manager) ImportSettings(ctx context.Context, actor string, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	type item struct {
		kind, id string
		v        any
	}
	var items []item
	for _, r := range s.Recipients {
		items = append(items, item{KindRecipient, r.ID, r})
	}
	for _, r := range s.Rosters {
		items = append(items, item{KindRoster, r.Site, r})
	}
	for _, p := range s.Policies {
		items = append(items, item{KindPolicy, p.ID, p})
	}
	if s.Flapping != nil {
		items = append(items, item{KindFlapping, "default", *s.Flapping})
	}
	err := m.tx(ctx, func(tx *sql.Tx) error {
		for _, it := range items {
			if err := m.putSetting(ctx, tx, actor, it.kind, it.id, it.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("import alerting settings: %w", err)
	}
	m.settings.invalidate()
	return nil
}

// PutRecipient creates or replaces a recipient; the change is audited
// under actor.
func (m *Manager) PutRecipient(ctx context.Context, actor string, r Recipient) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return m.PutSetting(ctx, actor, KindRecipient, r.ID, r)
}

// PutRoster creates or replaces the roster of r.Site; audited under actor.
func (m *Manager) PutRoster(ctx context.Context, actor string, r Roster) error {
	if err := r.Validate(); err != nil {
		return err
	}
	return m.PutSetting(ctx, actor, KindRoster, r.Site, r)
}

// PutPolicy creates or replaces an escalation policy; audited under actor.
func (m *Manager) PutPolicy(ctx context.Context, actor string, p Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	return m.PutSetting(ctx, actor, KindPolicy, p.ID, p)
}

// PutFlapping replaces the flapping setting; audited under actor.
func (m *Manager) PutFlapping(ctx context.Context, actor string, f Flapping) error {
	if err := f.Validate(); err != nil {
		return err
	}
	return m.PutSetting(ctx, actor, KindFlapping, "default", f)
}

// PutSetting stores v (encoded as JSON) as setting (kind, id) and audits
// the change under actor. Other packages' live settings (e.g. per-resident
// thresholds) may use it with their own kind; the engine re-reads settings
// within 2 s of a change in another process, at once in this one.
func (m *Manager) PutSetting(ctx context.Context, actor, kind, id string, v any) error {
	if actor == "" || kind == "" || id == "" {
		return errors.New("put setting: actor, kind and id are required")
	}
	err := m.tx(ctx, func(tx *sql.Tx) error { return m.putSetting(ctx, tx, actor, kind, id, v) })
	if err != nil {
		return fmt.Errorf("put %s %s: %w", kind, id, err)
	}
	m.settings.invalidate()
	return nil
}

// DeleteSetting removes setting (kind, id); audited under actor. Deleting
// a setting that does not exist is not an error.
func (m *Manager) DeleteSetting(ctx context.Context, actor, kind, id string) error {
	if actor == "" {
		return errors.New("delete setting: actor is required")
	}
	err := m.tx(ctx, func(tx *sql.Tx) error { return m.putSetting(ctx, tx, actor, kind, id, nil) })
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, id, err)
	}
	m.settings.invalidate()
	return nil
}

// putSetting writes (v != nil) or deletes (v == nil) a setting with its
// audit row and bumps settings_version, inside tx. An unchanged value is
// neither written nor audited.
func (m *Manager) putSetting(ctx context.Context, tx *sql.Tx, actor, kind, id string, v any) error {
	var newBody string
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode setting: %w", err)
		}
		newBody = string(b)
	}
	var oldBody string
	err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT body FROM alerting_settings WHERE kind = ? AND id = ?`), kind, id).Scan(&oldBody)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read setting: %w", err)
	}
	if oldBody == newBody {
		return nil
	}
	now := m.now().UnixMilli()
	if newBody == "" {
		_, err = tx.ExecContext(ctx, m.db.Rebind(`DELETE FROM alerting_settings WHERE kind = ? AND id = ?`), kind, id)
	} else {
		_, err = tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO alerting_settings (kind, id, body, updated_ms, updated_by) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms, updated_by = excluded.updated_by`),
			kind, id, newBody, now, actor)
	}
	if err != nil {
		return fmt.Errorf("write setting: %w", err)
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, `UPDATE alerting_counters SET value = value + 1 WHERE name = 'settings_audit' RETURNING value`).Scan(&seq); err != nil {
		return fmt.Errorf("number audit entry: %w", err)
	}
	if _, err := tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO settings_audit (seq, at_ms, actor, kind, setting_id, old_body, new_body) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		seq, now, actor, kind, id, oldBody, newBody); err != nil {
		return fmt.Errorf("audit setting: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE alerting_counters SET value = value + 1 WHERE name = 'settings_version'`); err != nil {
		return fmt.Errorf("bump settings version: %w", err)
	}
	return nil
}

// AuditEntry is one settings change: who changed what, and when. Old and
// New are the JSON documents before and after ("" = did not exist).
type AuditEntry struct {
	Seq   int64     `json:"seq"`
	At    time.Time `json:"at"`
	Actor string    `json:"actor"`
	Kind  string    `json:"kind"`
	ID    string    `json:"id"`
	Old   string    `json:"old"`
	New   string    `json:"new"`
}

// SettingsAudit returns the newest limit settings changes (0 = 100),
// newest first.
func (m *Manager) SettingsAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT seq, at_ms, actor, kind, setting_id, old_body, new_body FROM settings_audit ORDER BY seq DESC LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("settings audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Kind, &e.ID, &e.Old, &e.New); err != nil {
			return nil, fmt.Errorf("settings audit: %w", err)
		}
		e.At = time.UnixMilli(at).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Settings reads the current settings from the store (bypassing the
// engine's cache).
func (m *Manager) Settings(ctx context.Context) (Settings, error) {
	s, _, err := m.loadSettings(ctx)
	return s, err
}

func (m *Manager) settingsVersion(ctx context.Context) (int64, error) {
	var v int64
	err := m.db.QueryRowContext(ctx, `SELECT value FROM alerting_counters WHERE name = 'settings_version'`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("settings version: %w", err)
	}
	return v, nil
}

func (m *Manager) loadSettings(ctx context.Context) (Settings, int64, error) {
	ver, err := m.settingsVersion(ctx)
	if err != nil {
		return Settings{}, 0, err
	}
	rows, err := m.db.QueryContext(ctx, `SELECT kind, id, body FROM alerting_settings ORDER BY kind, id`)
	if err != nil {
		return Settings{}, 0, fmt.Errorf("load settings: %w", err)
	}
	defer rows.Close()
	var s Settings
	for rows.Next() {
		var kind, id, body string
		if err := rows.Scan(&kind, &id, &body); err != nil {
			return Settings{}, 0, fmt.Errorf("load settings: %w", err)
		}
		var derr error
		switch kind {
		case KindRecipient:
			var r Recipient
			if derr = json.Unmarshal([]byte(body), &r); derr == nil {
				s.Recipients = append(s.Recipients, r)
			}
		case KindRoster:
			var r Roster
			if derr = json.Unmarshal([]byte(body), &r); derr == nil {
				s.Rosters = append(s.Rosters, r)
			}
		case KindPolicy:
			var p Policy
			if derr = json.Unmarshal([]byte(body), &p); derr == nil {
				s.Policies = append(s.Policies, p)
			}
		case KindFlapping:
			var f Flapping
			if derr = json.Unmarshal([]byte(body), &f); derr == nil {
				s.Flapping = &f
			}
		}
		if derr != nil {
			m.log.Error("alerting: bad setting ignored", "kind", kind, "id", id, "err", derr)
		}
	}
	return s, ver, rows.Err()
}

// settingsCache keeps the settings the engine works with. It re-reads them
// at once after a change through this Manager, and when settings_version
// changed (another process wrote), checked at most every 2 s.
type settingsCache struct {
	mu      sync.Mutex
	s       Settings
	ver     int64
	checked time.Time
	valid   bool
}

const settingsRecheck = 2 * time.Second

func (c *settingsCache) invalidate() {
	c.mu.Lock()
	c.valid = false
	c.mu.Unlock()
}

// current returns the settings in force.
func (m *Manager) currentSettings(ctx context.Context) (Settings, error) {
	c := &m.settings
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.valid && now.Sub(c.checked) < settingsRecheck {
		return c.s, nil
	}
	if c.valid {
		ver, err := m.settingsVersion(ctx)
		if err != nil {
			// Settings read moments ago beat none: a store that fails
			// here fails the write that follows, which is retried.
			return c.s, nil
		}
		if ver == c.ver {
			c.checked = now
			return c.s, nil
		}
	}
	s, ver, err := m.loadSettings(ctx)
	if err != nil {
		return Settings{}, err
	}
	c.s, c.ver, c.checked, c.valid = s, ver, now, true
	return s, nil
}

func (s Settings) flapping() Flapping {
	if s.Flapping != nil {
		return *s.Flapping
	}
	return DefaultFlapping
}

func (s Settings) recipient(id string) (Recipient, bool) {
	for _, r := range s.Recipients {
		if r.ID == id {
			return r, true
		}
	}
	return Recipient{}, false
}

func (s Settings) roster(site string) (Roster, bool) {
	for _, r := range s.Rosters {
		if r.Site == site {
			return r, true
		}
	}
	return Roster{}, false
}

func (s Settings) policy(id string) (Policy, bool) {
	for _, p := range s.Policies {
		if p.ID == id {
			return p, true
		}
	}
	return Policy{}, false
}

func (s Settings) policyFor(a Alert) (Policy, bool) {
	for _, p := range s.Policies {
		if p.matches(a) {
			return p, true
		}
	}
	return Policy{}, false
}

// shiftAt names the shift on duty at site at t ("" = no roster or no
// shift).
func (s Settings) shiftAt(site string, t time.Time) string {
	r, ok := s.roster(site)
	if !ok {
		return ""
	}
	sh, ok := r.ShiftAt(t)
	if !ok {
		return ""
	}
	return sh.Name
}
