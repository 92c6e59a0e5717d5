package dashboard

import (
	"context"
	"fmt"
	"math"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// Family view time windows.
const (
	// MealWindow: a meal event this recent means "at a meal".
	MealWindow = 45 * time.Minute
	// SeriousWindow: how far back the family view lists serious events.
	SeriousWindow = 30 * 24 * time.Hour
	// maxEmailLen is the longest e-mail address (RFC 5321 path limit).
	maxEmailLen = 254
)

// familyRange is the normal range of a vital shown to families: the range
// outside which alerting raises an alert (alerting.DefaultThresholds:
// heart rate 50-120 bpm and respiration 8-25 breaths/min after NEWS2,
// Royal College of Physicians 2017; SpO2 from 90 %, BTS guideline,
// O'Driscoll et al., Thorax 2017). Pulse uses the heart-rate range.
type familyRange struct {
	Field, LabelKey string
	Lo, Hi          float64
}

var familyRanges = func() []familyRange {
	rng := func(th alerting.Threshold) (float64, float64) {
		lo, hi := th.Low, th.High
		if math.IsNaN(hi) {
			hi = 100 // SpO2 has no upper alert bound: 100 %
		}
		return lo, hi
	}
	hrLo, hrHi := rng(alerting.HeartRate)
	spLo, spHi := rng(alerting.SpO2Low)
	rrLo, rrHi := rng(alerting.Respiration)
	return []familyRange{
		{"hr_bpm", "fam.hr", hrLo, hrHi},
		{"spo2_pct", "fam.spo2", spLo, spHi},
		{"resp_per_min", "fam.rr", rrLo, rrHi},
		{"pulse_bpm", "fam.pulse", hrLo, hrHi},
	}
}()

// vitalSentence says a value in plain words, e.g. "Heart rate 72 bpm —
// normal (50-120)".
func vitalSentence(lang string, r familyRange, v float64) (text, verdict string) {
	verdict = "normal"
	switch {
	case v < r.Lo:
		verdict = "low"
	case v > r.Hi:
		verdict = "high"
	}
	return trf(lang, "fam.vital_line", "label", trIn(lang, r.LabelKey), "value", formatValue(r.Field, v),
		"unit", trIn(lang, "unit."+r.Field), "verdict", trIn(lang, "fam."+verdict),
		"lo", fmt.Sprintf("%g", r.Lo), "hi", fmt.Sprintf("%g", r.Hi)), verdict
}

// familyVital is one line of the family view.
type familyVital struct {
	Text, Verdict, Age string
}

// familyEvent is one serious event.
type familyEvent struct {
	Type, At, Outcome string
	Handled           bool
}

// familyPage is GET /family: for each resident linked to the family
// member, the state now, the latest vitals in plain words with normal
// ranges, and the serious (critical and high) events of the last 30 days.
// Each resident shown is a view of health data and is audited.
func (s *Server) familyPage(c *fiber.Ctx) error {
	u, ok := userFrom(c)
	if !ok {
		return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
	}
	lang := langOf(c)
	cards, err := s.familyModel(c.UserContext(), lang, u)
	if err != nil {
		return err
	}
	for _, cd := range cards {
		s.audit(c, AuditViewResident, "resident:"+cd.Resident.ID, c.Path())
	}
	return s.renderView(c, 0, "family", "fam.title", map[string]any{"Cards": cards})
}

// SettingsStore is the part of *alerting.Manager the preference and
// policy forms use.
type SettingsStore interface {
	Settings(ctx context.Context) (alerting.Settings, error)
	PutRecipient(ctx context.Context, actor string, r alerting.Recipient) error
}

// settings returns the alert settings store, or nil when Deps.Alerts has
// none.
func (s *Server) settings() SettingsStore {
	return s.deps.Settings
}

// prefForm is the family preference form.
type prefForm struct {
	Email, Start, End, Zone string
	Quiet                   bool
}

// recipientOf returns the family member's recipient (id = username).
func recipientOf(set alerting.Settings, u *User) (alerting.Recipient, bool) {
	for _, r := range set.Recipients {
		if r.ID == u.Username {
			return r, true
		}
	}
	return alerting.Recipient{}, false
}

// defaultZone is the time zone of the family member's first resident's
// site, else UTC.
func (s *Server) defaultZone(ctx context.Context, u *User) string {
	d, err := s.directory(ctx)
	if err != nil {
		return "UTC"
	}
	for _, id := range u.Residents {
		if r, ok := d.resByID[id]; ok {
			if tz := d.siteByID[r.SiteID].TimeZone; tz != "" {
				return tz
			}
		}
	}
	return "UTC"
}

// preferencesPage is GET /family/preferences.
func (s *Server) preferencesPage(c *fiber.Ctx) error {
	u, ok := userFrom(c)
	if !ok {
		return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
	}
	st := s.settings()
	form := prefForm{Zone: s.defaultZone(c.UserContext(), u), Start: "22:00", End: "07:00"}
	if st != nil {
		set, err := st.Settings(c.UserContext())
		if err != nil {
			return fmt.Errorf("read alert settings: %w", err)
		}
		if r, ok := recipientOf(set, u); ok {
			form.Email = r.Email
			if r.Quiet != nil {
				form.Quiet, form.Start, form.End, form.Zone = true, r.Quiet.Start.String(), r.Quiet.End.String(), r.Quiet.Zone
			}
		}
	}
	return s.renderView(c, 0, "preferences", "pref.title", map[string]any{
		"Form": form, "Errors": formErrors{}, "Available": st != nil, "Saved": c.Query("saved") == "1", "CSRF": csrfOf(c)})
}

// parsePrefs validates the preference form: e-mail (empty, or one address
// of at most 254 characters), and with quiet hours on, start and end as
// HH:MM and an IANA time zone.
func parsePrefs(lang string, f prefForm) (*alerting.QuietHours, formErrors) {
	errs := formErrors{}
	if f.Email != "" {
		a, err := mail.ParseAddress(f.Email)
		if err != nil || a.Address != f.Email || len(f.Email) > maxEmailLen {
			errs.add("email", trIn(lang, "form.err.an_e_mail_address_like"))
		}
	}
	if !f.Quiet {
		return nil, errs
	}
	var q alerting.QuietHours
	var err error
	if q.Start, err = alerting.ParseClock(f.Start); err != nil {
		errs.add("start", trIn(lang, "form.err.a_time_of_day_as"))
	}
	if q.End, err = alerting.ParseClock(f.End); err != nil {
		errs.add("end", trIn(lang, "form.err.a_time_of_day_as"))
	}
	if f.Zone == "" || strings.ContainsAny(f.Zone, " \t") {
		errs.add("zone", trIn(lang, "form.err.an_iana_time_zone_such"))
	} else if _, err := time.LoadLocation(f.Zone); err != nil {
		errs.add("zone", trIn(lang, "form.err.an_iana_time_zone_such"))
	}
	q.Zone = f.Zone
	return &q, errs
}

// postPreferences is POST /family/preferences: stores the family member's
// e-mail and quiet hours as their alerting recipient (id = username, role
// family, sites of their residents) through alerting.Manager.PutRecipient.
// Invalid fields answer 400 with a message next to each.
func (s *Server) postPreferences(c *fiber.Ctx) error {
	u, ok := userFrom(c)
	if !ok {
		return fiber.NewError(fiber.StatusUnauthorized, "not logged in")
	}
	lang := langOf(c)
	st := s.settings()
	if st == nil {
		return fiber.NewError(fiber.StatusServiceUnavailable, trIn(lang, "pref.unavailable"))
	}
	form := prefForm{Email: strings.TrimSpace(c.FormValue("email")), Quiet: c.FormValue("quiet") == "on",
		Start: strings.TrimSpace(c.FormValue("start")), End: strings.TrimSpace(c.FormValue("end")), Zone: strings.TrimSpace(c.FormValue("zone"))}
	quiet, errs := parsePrefs(lang, form)
	if len(errs) > 0 {
		return s.renderView(c, fiber.StatusBadRequest, "preferences", "pref.title", map[string]any{
			"Form": form, "Errors": errs, "Available": true, "CSRF": csrfOf(c)})
	}
	ctx := c.UserContext()
	set, err := st.Settings(ctx)
	if err != nil {
		return fmt.Errorf("read alert settings: %w", err)
	}
	r, _ := recipientOf(set, u)
	r.ID, r.Name, r.Role, r.Email, r.Quiet = u.Username, u.Display(), RoleFamily, form.Email, quiet
	r.Residents = slices.Clone(u.Residents) // paged only about their own elder
	d, err := s.directory(ctx)
	if err != nil {
		return err
	}
	var sites []string
	for _, id := range u.Residents {
		if res, ok := d.resByID[id]; ok && !slices.Contains(sites, res.SiteID) {
			sites = append(sites, res.SiteID)
		}
	}
	r.Sites = sites
	if err := st.PutRecipient(ctx, u.Username, r); err != nil {
		return fmt.Errorf("save preferences of %s: %w", u.Username, err)
	}
	s.audit(c, "preferences", "recipient:"+r.ID, "")
	return c.Redirect("/family/preferences?saved=1", fiber.StatusSeeOther)
}
