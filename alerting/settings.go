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
	KindTeam      = "team"
	KindFallback  = "fallback"
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

// Recipient is a person who can be paged: a staff account (caregiver,
// nurse lead, manager) or a family contact. The id is the dashboard
// account's user name when the account's contacts were saved through the
// dashboard (the account page or the admin's user page). Stored as setting
// kind "recipient".
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
	// message, e.g. a WeCom user id or a DingTalk mobile number). Kept for
	// older settings; WeCom and DingTalk win when set.
	ChatID string `json:"chat_id,omitempty" yaml:"chat_id,omitempty"`
	// Phone is a mobile number in E.164 form, e.g. +8613800000001.
	Phone string `json:"phone,omitempty" yaml:"phone,omitempty"`
	// WeCom is the WeCom (企业微信) user id, mentioned as <@id>.
	WeCom string `json:"wecom,omitempty" yaml:"wecom,omitempty"`
	// DingTalk is the DingTalk user id or mobile number to @mention.
	DingTalk string `json:"dingtalk,omitempty" yaml:"dingtalk,omitempty"`
	// InApp: the person is paged on the dashboard's live board (the
	// in-app channel of a staff account).
	InApp bool `json:"in_app,omitempty" yaml:"in_app,omitempty"`
	// Lang is the language notifications to this person are written in:
	// "zh-CN" or "en" ("" = en).
	Lang string `json:"lang,omitempty" yaml:"lang,omitempty"`
	// Residents are the resident ids a family contact is paged about. A
	// recipient with residents (and every family recipient) is paged only
	// about alerts of these residents, whatever target named it.
	Residents []string `json:"residents,omitempty" yaml:"residents,omitempty"`
	// Channels the person wants to be paged on: email, wecom, dingtalk,
	// phone, in_app; empty: every channel with a contact.
	Channels []string `json:"channels,omitempty" yaml:"channels,omitempty"`
	// Quiet, if set, holds back non-critical notifications.
	Quiet *QuietHours `json:"quiet,omitempty" yaml:"quiet,omitempty"`
}

// Channel names of [Recipient.Channels].
var Channels = []string{"email", "wecom", "dingtalk", "phone", "in_app"}

// wants reports whether r accepts notifications on channel.
func (r Recipient) wants(channel string) bool {
	return len(r.Channels) == 0 || slices.Contains(r.Channels, channel)
}

// Reachable reports whether r can be paged: it has a contact on a channel
// it accepts.
func (r Recipient) Reachable() bool {
	c := r.contact()
	return c.Email != "" || c.ChatID != "" || c.Phone != "" || c.WeCom != "" || c.DingTalk != "" || c.InApp
}

// family reports whether r is paged only about its own residents.
func (r Recipient) family() bool { return r.Role == "family" || len(r.Residents) > 0 }

// contact is r as addressed in a notification: only the channels it
// accepts.
func (r Recipient) contact() Contact {
	c := Contact{ID: r.ID, Name: r.Name, Role: r.Role, Lang: r.Lang}
	if r.wants("email") {
		c.Email = r.Email
	}
	if r.wants("wecom") {
		c.WeCom = r.WeCom
	}
	if r.wants("dingtalk") {
		c.DingTalk = r.DingTalk
	}
	if r.wants("phone") {
		c.Phone = r.Phone
	}
	if r.wants("wecom") || r.wants("dingtalk") {
		c.ChatID = r.ChatID
	}
	c.InApp = r.InApp && r.wants("in_app")
	return c
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
	if r.Phone != "" && !validPhone(r.Phone) {
		errs = append(errs, fmt.Errorf("recipient %s: phone %q: want digits, optionally after +", r.ID, r.Phone))
	}
	switch r.Lang {
	case "", "en", "zh-CN":
	default:
		errs = append(errs, fmt.Errorf("recipient %s: language %q: want en or zh-CN", r.ID, r.Lang))
	}
	for _, c := range r.Channels {
		if !slices.Contains(Channels, c) {
			errs = append(errs, fmt.Errorf("recipient %s: channel %q: want one of %s", r.ID, c, strings.Join(Channels, ", ")))
		}
	}
	if r.Role == "family" && len(r.Residents) == 0 {
		errs = append(errs, fmt.Errorf("recipient %s: a family contact names the residents it is paged about", r.ID))
	}
	if r.Quiet != nil {
		if err := r.Quiet.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("recipient %s: quiet hours: %w", r.ID, err))
		}
	}
	return errors.Join(errs...)
}

func validPhone(p string) bool {
	p = strings.TrimPrefix(p, "+")
	if len(p) < 5 || len(p) > 15 {
		return false
	}
	for _, c := range p {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Team is a group of staff accounts, e.g. a ward's carers; policy steps
// name it as "team:<id>". Stored as setting kind "team".
type Team struct {
	ID   string `json:"id" yaml:"id"`
	Name string `json:"name" yaml:"name"`
	// Site the team works at ("" = any).
	Site    string   `json:"site,omitempty" yaml:"site,omitempty"`
	Members []string `json:"members" yaml:"members"`
}

// Fallback names who is paged when an escalation step of an alert at Site
// resolves to nobody ("" = every site without its own fallback): the
// site's fallback receivers, e.g. the station display account and the
// manager. Stored as setting kind "fallback" with the site ("*" for "").
type Fallback struct {
	Site       string   `json:"site" yaml:"site"`
	Recipients []string `json:"recipients" yaml:"recipients"`
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
	// time of the step: the roster of the ward of the resident's room, else
	// the site's), "ward:<ward>" (the staff on duty in that ward's roster at
	// the alert's site), "role:<role>" (every recipient with the role, for
	// the alert's site), "team:<id>" (the team's members) or
	// "account:<id>" (one staff account; "recipient:<id>" is the same).
	// Family contacts are paged only about their own residents, whichever
	// target names them.
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
			if kind, _ := splitTarget(t); kind == "" {
				errs = append(errs, fmt.Errorf("policy %s: step %d: target %q: want on_duty, role:<role>, team:<id> or account:<id> (or ward:<ward>)", p.ID, i, t))
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
	Teams      []Team      `json:"teams,omitempty" yaml:"teams,omitempty"`
	Fallbacks  []Fallback  `json:"fallbacks,omitempty" yaml:"fallbacks,omitempty"`
	// Flapping nil: DefaultFlapping.
	Flapping *Flapping `json:"flapping,omitempty" yaml:"flapping,omitempty"`

	// wards resolves alerts to wards at alert time (not stored).
	wards Wards
}

// Validate reports every problem of s, including references to unknown
// recipients or teams, recipients that cannot be paged (no contact), and
// policies whose steps reach nobody.
func (s Settings) Validate() error {
	var errs []error
	ids := map[string]Recipient{}
	for _, r := range s.Recipients {
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
		if _, dup := ids[r.ID]; dup {
			errs = append(errs, fmt.Errorf("recipient %s twice", r.ID))
		}
		ids[r.ID] = r
	}
	named := func(where, id string) {
		r, ok := ids[id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: unknown staff account %q", where, id))
		case !r.Reachable():
			errs = append(errs, fmt.Errorf("%s: %q cannot be paged: no e-mail, phone, WeCom, DingTalk or in-app channel", where, id))
		}
	}
	teams := map[string]bool{}
	for _, t := range s.Teams {
		if t.ID == "" {
			errs = append(errs, errors.New("team: id is required"))
		}
		if teams[t.ID] {
			errs = append(errs, fmt.Errorf("team %s twice", t.ID))
		}
		teams[t.ID] = true
		if len(t.Members) == 0 {
			errs = append(errs, fmt.Errorf("team %s has no members", t.ID))
		}
		for _, id := range t.Members {
			named("team "+t.ID, id)
		}
	}
	for _, r := range s.Rosters {
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
		for _, id := range r.people() {
			named("roster "+r.Key(), id)
		}
	}
	for _, f := range s.Fallbacks {
		for _, id := range f.Recipients {
			named("fallback of site "+f.Site, id)
		}
	}
	for _, p := range s.Policies {
		if err := p.Validate(); err != nil {
			errs = append(errs, err)
		}
		for i, st := range p.Steps {
			for _, t := range st.Targets {
				switch kind, arg := splitTarget(t); kind {
				case "account":
					named(fmt.Sprintf("policy %s step %d", p.ID, i), arg)
				case "team":
					if !teams[arg] {
						errs = append(errs, fmt.Errorf("policy %s step %d: unknown team %q", p.ID, i, arg))
					}
				case "ward":
					if !slices.ContainsFunc(s.Rosters, func(r Roster) bool {
						return r.Ward == arg && (len(p.Sites) == 0 || slices.Contains(p.Sites, r.Site))
					}) {
						errs = append(errs, fmt.Errorf("policy %s step %d: unknown ward %q: no roster of that ward at the policy's sites", p.ID, i, arg))
					}
				}
			}
		}
		if len(p.Steps) > 0 && len(s.reach(p)) == 0 {
			errs = append(errs, fmt.Errorf("policy %s: its steps reach nobody: no staff account with a contact is on duty, has the roles or is in the teams named", p.ID))
		}
	}
	if s.Flapping != nil {
		if err := s.Flapping.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// splitTarget splits a policy target into its kind (on_duty, role, team,
// account) and argument; kind "" for a malformed target.
func splitTarget(t string) (kind, arg string) {
	if t == "on_duty" {
		return "on_duty", ""
	}
	k, a, ok := strings.Cut(t, ":")
	if !ok || a == "" {
		return "", ""
	}
	switch k {
	case "role", "team", "account", "ward":
		return k, a
	case "recipient":
		return "account", a
	}
	return "", ""
}

// reach returns the ids of the reachable recipients any step of p can
// page at some time (every shift of every roster of p's sites).
func (s Settings) reach(p Policy) []string {
	var out []string
	add := func(id string) {
		if r, ok := s.recipient(id); ok && r.Reachable() && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	siteOK := func(site string) bool { return len(p.Sites) == 0 || site == "" || slices.Contains(p.Sites, site) }
	for _, st := range p.Steps {
		for _, t := range st.Targets {
			switch kind, arg := splitTarget(t); kind {
			case "on_duty", "ward":
				for _, r := range s.Rosters {
					if siteOK(r.Site) && (kind == "on_duty" || r.Ward == arg) {
						for _, id := range r.people() {
							add(id)
						}
					}
				}
			case "role":
				for _, r := range s.Recipients {
					if r.Role == arg && (len(r.Sites) == 0 || len(p.Sites) == 0 || slices.ContainsFunc(r.Sites, siteOK)) {
						add(r.ID)
					}
				}
			case "team":
				for _, t := range s.Teams {
					if t.ID == arg {
						for _, id := range t.Members {
							add(id)
						}
					}
				}
			case "account":
				add(arg)
			}
		}
	}
	return out
}

// Reach returns the ids of the staff accounts and contacts policy p can
// page (see [Settings.Validate]).
func (s Settings) Reach(p Policy) []string { return s.reach(p) }

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
//
// s is validated merged with the stored settings (the same checks as the
// dashboard's forms), so the YAML may name staff accounts whose contacts
// were set on the dashboard.
func (m *Manager) ImportSettings(ctx context.Context, actor string, s Settings) error {
	cur, err := m.Settings(ctx)
	if err != nil {
		return err
	}
	merged := mergeSettings(cur, s)
	if err := merged.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
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
		items = append(items, item{KindRoster, r.Key(), r})
	}
	for _, p := range s.Policies {
		items = append(items, item{KindPolicy, p.ID, p})
	}
	for _, t := range s.Teams {
		items = append(items, item{KindTeam, t.ID, t})
	}
	for _, f := range s.Fallbacks {
		items = append(items, item{KindFallback, fallbackID(f.Site), f})
	}
	if s.Flapping != nil {
		items = append(items, item{KindFlapping, "default", *s.Flapping})
	}
	err = m.tx(ctx, func(tx *sql.Tx) error {
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

// mergeSettings returns cur with every item of s added or replaced by id.
func mergeSettings(cur, s Settings) Settings {
	for _, r := range s.Recipients {
		cur.Recipients = replaceBy(cur.Recipients, r, func(x Recipient) bool { return x.ID == r.ID })
	}
	for _, r := range s.Rosters {
		cur.Rosters = replaceBy(cur.Rosters, r, func(x Roster) bool { return x.Key() == r.Key() })
	}
	for _, p := range s.Policies {
		cur.Policies = replaceBy(cur.Policies, p, func(x Policy) bool { return x.ID == p.ID })
	}
	for _, t := range s.Teams {
		cur.Teams = replaceBy(cur.Teams, t, func(x Team) bool { return x.ID == t.ID })
	}
	for _, f := range s.Fallbacks {
		cur.Fallbacks = replaceBy(cur.Fallbacks, f, func(x Fallback) bool { return x.Site == f.Site })
	}
	if s.Flapping != nil {
		cur.Flapping = s.Flapping
	}
	return cur
}

// ErrInvalid wraps every validation error of a Put: the value, checked
// together with the stored settings (unknown ids, people who cannot be
// paged, a policy that reaches nobody), was refused and nothing changed.
var ErrInvalid = errors.New("invalid setting")

// putChecked stores setting (kind, id) = v after validating the stored
// settings as changed by apply.
func (m *Manager) putChecked(ctx context.Context, actor, kind, id string, v any, apply func(*Settings)) error {
	cur, err := m.Settings(ctx)
	if err != nil {
		return err
	}
	apply(&cur)
	if err := cur.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return m.PutSetting(ctx, actor, kind, id, v)
}

func replaceBy[T any](list []T, v T, same func(T) bool) []T {
	out := slices.DeleteFunc(slices.Clone(list), same)
	return append(out, v)
}

// PutRecipient creates or replaces a recipient; the change is audited
// under actor. It returns an error wrapping [ErrInvalid] when the
// recipient, or the settings with it, are invalid.
func (m *Manager) PutRecipient(ctx context.Context, actor string, r Recipient) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return m.putChecked(ctx, actor, KindRecipient, r.ID, r, func(s *Settings) {
		s.Recipients = replaceBy(s.Recipients, r, func(x Recipient) bool { return x.ID == r.ID })
	})
}

// PutRoster creates or replaces the roster of r.Site (and r.Ward); audited
// under actor. Everyone it names must be a staff account that can be
// paged; its ward, when the manager knows the registry's wards
// (SetWards), must be a ward of the site's rooms.
func (m *Manager) PutRoster(ctx context.Context, actor string, r Roster) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := m.checkWard(r); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return m.putChecked(ctx, actor, KindRoster, r.Key(), r, func(s *Settings) {
		s.Rosters = replaceBy(s.Rosters, r, func(x Roster) bool { return x.Key() == r.Key() })
	})
}

// PutPolicy creates or replaces an escalation policy; audited under actor.
// A policy naming an unknown account or team, or whose steps reach nobody,
// is refused with an error wrapping [ErrInvalid].
func (m *Manager) PutPolicy(ctx context.Context, actor string, p Policy) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return m.putChecked(ctx, actor, KindPolicy, p.ID, p, func(s *Settings) {
		s.Policies = replaceBy(s.Policies, p, func(x Policy) bool { return x.ID == p.ID })
	})
}

// PutTeam creates or replaces a team; audited under actor.
func (m *Manager) PutTeam(ctx context.Context, actor string, t Team) error {
	return m.putChecked(ctx, actor, KindTeam, t.ID, t, func(s *Settings) {
		s.Teams = replaceBy(s.Teams, t, func(x Team) bool { return x.ID == t.ID })
	})
}

// PutFallback sets the fallback receivers of f.Site; audited under actor.
func (m *Manager) PutFallback(ctx context.Context, actor string, f Fallback) error {
	return m.putChecked(ctx, actor, KindFallback, fallbackID(f.Site), f, func(s *Settings) {
		s.Fallbacks = replaceBy(s.Fallbacks, f, func(x Fallback) bool { return x.Site == f.Site })
	})
}

func fallbackID(site string) string {
	if site == "" {
		return "*"
	}
	return site
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
		case KindTeam:
			var t Team
			if derr = json.Unmarshal([]byte(body), &t); derr == nil {
				s.Teams = append(s.Teams, t)
			}
		case KindFallback:
			var f Fallback
			if derr = json.Unmarshal([]byte(body), &f); derr == nil {
				s.Fallbacks = append(s.Fallbacks, f)
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
	mu sync.Mutex
	// wards tells the ward of an alert (SetWards; nil: no wards, every
	// alert uses its site's roster).
	wards   Wards
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
		return c.s.withWards(c.wards), nil
	}
	if c.valid {
		ver, err := m.settingsVersion(ctx)
		if err != nil {
			// Settings read moments ago beat none: a store that fails
			// here fails the write that follows, which is retried.
			return c.s.withWards(c.wards), nil
		}
		if ver == c.ver {
			c.checked = now
			return c.s.withWards(c.wards), nil
		}
	}
	s, ver, err := m.loadSettings(ctx)
	if err != nil {
		return Settings{}, err
	}
	c.s, c.ver, c.checked, c.valid = s, ver, now, true
	return s.withWards(c.wards), nil
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

func (s Settings) team(id string) (Team, bool) {
	for _, t := range s.Teams {
		if t.ID == id {
			return t, true
		}
	}
	return Team{}, false
}

// fallback returns the fallback recipient ids of site.
func (s Settings) fallback(site string) []string {
	var any []string
	for _, f := range s.Fallbacks {
		if f.Site == site {
			return f.Recipients
		}
		if f.Site == "" {
			any = f.Recipients
		}
	}
	return any
}

// onDutyAt returns the shift on duty at t for an alert in ward of site:
// the ward's roster's shift when the ward has a roster with a shift
// covering t and someone on duty in it, else the site's roster's (Ward
// ""). A gap in a ward's roster (a ward staffed by day only, a night whose
// exception left nobody) so falls back to the site's staff on duty instead
// of reaching nobody.
func (s Settings) onDutyAt(site, ward string, t time.Time) (Shift, bool) {
	if ward != "" {
		if r, ok := s.wardRoster(site, ward); ok {
			if sh, ok := r.ShiftAt(t); ok && len(sh.OnDuty) > 0 {
				return sh, true
			}
		}
	}
	r, ok := s.wardRoster(site, "")
	if !ok {
		return Shift{}, false
	}
	return r.ShiftAt(t)
}

// roster returns the roster of ward of site: the ward's own roster, else
// the site's (Ward ""). Who is on duty at a time is onDutyAt's.
func (s Settings) roster(site, ward string) (Roster, bool) {
	if ward != "" {
		if r, ok := s.wardRoster(site, ward); ok {
			return r, true
		}
	}
	return s.wardRoster(site, "")
}

// wardRoster returns exactly the roster of (site, ward).
func (s Settings) wardRoster(site, ward string) (Roster, bool) {
	for _, r := range s.Rosters {
		if r.Site == site && r.Ward == ward {
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

// shiftAt names the shift on duty in ward of site at t (see onDutyAt;
// "" = no roster or no shift).
func (s Settings) shiftAt(site, ward string, t time.Time) string {
	sh, ok := s.onDutyAt(site, ward, t)
	if !ok {
		return ""
	}
	return sh.Name
}
