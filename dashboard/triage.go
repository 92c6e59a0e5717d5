package dashboard

import (
	"context"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/eldercare-iot/eldercare/alerting"
)

// alertTypes are the alert types the dashboard has words for.
var alertTypes = []string{alerting.TypeFall, alerting.TypeSOS, alerting.TypeSpO2Low, alerting.TypeHeartRate,
	alerting.TypeRespiration, alerting.TypeDeviceOffline, alerting.TypeBedExit, alerting.TypeOutOfBedNight,
	alerting.TypeNoActivity, alerting.TypeMealMissed, alerting.TypeLowBattery, alerting.TypeUnprotected, alerting.TypeNEWS2,
	alerting.TypeSensorSuspect, alerting.TypeClientTakeover, alerting.TypeEscalationUnrouted}

// valueTypes are the alert types whose Value is a reading (unit of the
// rule: % for SpO2 and battery, bpm, breaths/min, NEWS2 points).
var valueTypes = map[string]bool{alerting.TypeSpO2Low: true, alerting.TypeHeartRate: true, alerting.TypeRespiration: true,
	alerting.TypeNEWS2: true, alerting.TypeLowBattery: true}

// forSeconds finds the sustain span of a vitals alert's detail
// ("<label> <value> <unit> for <n> s", alerting's firing.Detail).
var forSeconds = regexp.MustCompile(` for (\d+) s\b`)

// alertWhat says what happened in plain words in lang, from the alert's
// type and structured value (never the store's English detail): "Heart
// rate 129 bpm for 1 min", "心率 129 次/分，持续 1 分钟".
func alertWhat(lang string, a alerting.Alert) string {
	if valueTypes[a.Type] && a.Value != nil {
		v := strconv.FormatFloat(math.Round(*a.Value*10)/10, 'f', -1, 64)
		s := trf(lang, "whatv."+a.Type, "v", v)
		if m := forSeconds.FindStringSubmatch(a.Detail); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
				s = trf(lang, "what.for", "what", s, "d", durText(lang, time.Duration(n)*time.Second))
			}
		}
		return s
	}
	if a.Type == alerting.TypeDeviceOffline || a.Type == alerting.TypeUnprotected || a.Type == alerting.TypeLowBattery ||
		a.Type == alerting.TypeSensorSuspect || a.Type == alerting.TypeClientTakeover || a.Type == alerting.TypeEscalationUnrouted {
		return trf(lang, "what."+a.Type, "device", a.Device)
	}
	return trIn(lang, "what."+a.Type)
}

// EscalationReader is the alert store's escalation state (optional;
// *alerting.Manager implements it).
type EscalationReader interface {
	Escalation(ctx context.Context, id int64) (alerting.EscalationState, bool, error)
}

// triageAlert is one alert of the caregiver's triage list.
type triageAlert struct {
	alertRow
	Room, Bed  string
	What       string
	Ago        string
	Repeats    int
	RepeatText string // "happened again 2 times, last 1 min ago"
	Escalation string // "not acknowledged for 3 min: nurse lead paged", "" when none
	NeedsNote  bool
}

// triageBed is a bed card of the board with the reasons it needs
// attention ("" when none).
type triageBed struct {
	bedCard
	Reasons []string
}

// triageModel is the caregiver board, phone first.
type triageModel struct {
	Now       []triageAlert // open alerts, by severity then age (oldest first)
	Handling  []triageAlert // acknowledged alerts, same order
	Attention []triageBed
	Rest      []triageBed
	Sites     map[string]siteInfo
	CSRF      string
	Back      string
}

// targetWords renders an escalation step's targets: "role:nurse_lead" →
// "nurse lead", "on_duty" → "staff on duty", "recipient:ana" → "ana".
func targetWords(lang string, targets []string) string {
	var out []string
	for _, t := range targets {
		switch {
		case t == "on_duty":
			out = append(out, trIn(lang, "esc.on_duty"))
		case strings.HasPrefix(t, "role:"):
			out = append(out, trIn(lang, "role."+strings.TrimPrefix(t, "role:")))
		case strings.HasPrefix(t, "recipient:"):
			out = append(out, strings.TrimPrefix(t, "recipient:"))
		default:
			out = append(out, t)
		}
	}
	return strings.Join(out, trIn(lang, "list.sep"))
}

// escalationWords says where the alert's escalation stands, from its
// history ("escalated" entries) and policy: "not acknowledged for 3 min:
// nurse lead paged", or "next: nurse lead in 2 min" before the first step.
func (s *Server) escalationWords(ctx context.Context, lang string, a alerting.Alert, hist []alerting.HistoryEntry, set *alerting.Settings, now time.Time) string {
	if a.Status != alerting.StatusOpen {
		return ""
	}
	waited := trf(lang, "esc.waiting", "d", durText(lang, now.Sub(a.OpenedAt)))
	var st alerting.EscalationState
	var ok bool
	if er := s.deps.Escalations; er != nil {
		var err error
		st, ok, err = er.Escalation(ctx, a.ID)
		if err != nil {
			s.log.Warn("board: escalation state unavailable", "alert", a.ID, "err", err)
		}
	}
	var policy *alerting.Policy
	if ok && set != nil {
		for i := range set.Policies {
			if set.Policies[i].ID == st.Policy {
				policy = &set.Policies[i]
			}
		}
	}
	escalated := 0
	for _, h := range hist {
		if h.Action == alerting.ActionEscalated {
			escalated++
		}
	}
	switch {
	case escalated > 0 && policy != nil:
		step := min(st.NextStep, len(policy.Steps)) - 1
		if step < 0 {
			step = 0
		}
		return trf(lang, "esc.paged", "waited", waited, "who", targetWords(lang, policy.Steps[step].Targets))
	case escalated > 0:
		return trf(lang, "esc.paged", "waited", waited, "who", trIn(lang, "esc.next_step"))
	case policy != nil && st.Due != nil && st.NextStep < len(policy.Steps):
		return trf(lang, "esc.next", "waited", waited, "who", targetWords(lang, policy.Steps[st.NextStep].Targets),
			"d", durText(lang, st.Due.Sub(now)))
	}
	return waited
}

// triage builds the board: alerts first, then beds needing attention,
// then the rest, limited to the user's sites.
func (s *Server) triage(c *fiber.Ctx) (triageModel, error) {
	ctx := c.UserContext()
	lang := langOf(c)
	cards, unassigned, sites, err := s.boardModel(ctx, lang)
	if err != nil {
		return triageModel{}, err
	}
	d, err := s.directoryIn(ctx, lang)
	if err != nil {
		return triageModel{}, err
	}
	u, _ := userFrom(c)
	// An alert of a site the registry does not know is shown to all staff:
	// nobody's scope covers it, and an alert nobody sees is lost.
	visible := func(site string) bool {
		_, known := d.siteByID[site]
		return u == nil || canSeeSite(u, site) || !known
	}
	now := s.now()
	var set *alerting.Settings
	if ps := s.policies(); ps != nil {
		if x, err := ps.Settings(ctx); err == nil {
			set = &x
		}
	}
	ths := s.thresholdsByResident(ctx)
	m := triageModel{Sites: sites, CSRF: csrfOf(c), Back: "/board"}

	addAlert := func(r alertRow, room, bed string) {
		hist, err := s.deps.Alerts.History(ctx, r.ID)
		if err != nil {
			s.log.Warn("board: alert history unavailable", "alert", r.ID, "err", err)
		}
		t := triageAlert{alertRow: r, Room: room, Bed: bed, What: alertWhat(lang, r.Alert), Ago: agoText(lang, now.Sub(r.OpenedAt))}
		var last time.Time
		for _, h := range hist {
			if h.Action == alerting.ActionRepeated {
				t.Repeats++
				last = later(last, h.At)
			}
		}
		if t.Repeats > 0 {
			// A repeat (a second fall) is news: say when the last one was.
			t.RepeatText = trn(lang, "triage.repeats_last", t.Repeats, "ago", agoText(lang, now.Sub(last)))
		}
		t.Escalation = s.escalationWords(ctx, lang, r.Alert, hist, set, now)
		if r.Status == alerting.StatusOpen {
			m.Now = append(m.Now, t)
		} else {
			m.Handling = append(m.Handling, t)
		}
	}
	for _, cd := range cards {
		site := cardSite(d, cd)
		if !visible(site) {
			continue
		}
		for _, a := range cd.Alerts {
			addAlert(a, cd.Room, cd.Bed)
		}
		b := triageBed{bedCard: cd}
		if cd.Resident != nil {
			b.Vitals = markVitals(cd.Vitals, ths(cd.Resident.ID))
		}
		for _, v := range b.Vitals {
			if v.Abnormal {
				b.Reasons = append(b.Reasons, trf(lang, "triage.reason.vital", "vital", trIn(lang, "vital."+v.Field), "v", v.Value, "unit", trIn(lang, "unit."+v.Field)))
			}
		}
		for _, dv := range cd.Devices {
			if dv.State == "offline" {
				b.Reasons = append(b.Reasons, trf(lang, "triage.reason.offline", "device", dv.Name))
			}
		}
		for _, a := range cd.Alerts {
			if a.Type == alerting.TypeSensorSuspect {
				b.Reasons = append(b.Reasons, trf(lang, "triage.reason.check_sensor", "device", a.Device))
			}
		}
		if len(cd.Alerts) > 0 {
			b.Reasons = append(b.Reasons, trn(lang, "triage.reason.alerts", len(cd.Alerts)))
		}
		if len(b.Reasons) > 0 {
			m.Attention = append(m.Attention, b)
		} else {
			m.Rest = append(m.Rest, b)
		}
	}
	for _, a := range unassigned {
		if visible(a.Site) {
			addAlert(a, "", "")
		}
	}
	order := func(xs []triageAlert) {
		sort.SliceStable(xs, func(i, j int) bool {
			a, b := xs[i], xs[j]
			if ra, rb := severityRank(a.Severity), severityRank(b.Severity); ra != rb {
				return ra < rb
			}
			if !a.OpenedAt.Equal(b.OpenedAt) {
				return a.OpenedAt.Before(b.OpenedAt)
			}
			return a.ID < b.ID
		})
	}
	order(m.Now)
	order(m.Handling)
	return m, nil
}

// cardSite is the site of a bed card.
func cardSite(d *directory, cd bedCard) string {
	if b, ok := d.bedByID[cd.Key]; ok {
		return b.SiteID
	}
	if cd.Resident != nil {
		return cd.Resident.SiteID
	}
	return ""
}

// ThresholdReader is the alert store's per-resident thresholds (optional;
// *alerting.Manager implements it).
type ThresholdReader interface {
	ResidentThresholds(ctx context.Context) (map[string][]alerting.Threshold, error)
}

// thresholdsByResident returns a lookup of a resident's vitals
// thresholds: alerting.DefaultThresholds with the resident's own in place
// of a default of the same type.
func (s *Server) thresholdsByResident(ctx context.Context) func(resident string) []alerting.Threshold {
	var own map[string][]alerting.Threshold
	if tr := s.deps.Thresholds; tr != nil {
		var err error
		if own, err = tr.ResidentThresholds(ctx); err != nil {
			s.log.Warn("board: resident thresholds unavailable; using the defaults", "err", err)
		}
	}
	return func(resident string) []alerting.Threshold {
		out := slices.Clone(alerting.DefaultThresholds)
		for _, th := range own[resident] {
			if i := slices.IndexFunc(out, func(d alerting.Threshold) bool { return d.Type == th.Type }); i >= 0 {
				out[i] = th
			} else {
				out = append(out, th)
			}
		}
		return out
	}
}

// markVitals sets each vital's alert range (Lo, Hi; NaN = none) from ths
// and marks the values outside it.
func markVitals(vs []vitalView, ths []alerting.Threshold) []vitalView {
	out := slices.Clone(vs)
	for i := range out {
		out[i].Lo, out[i].Hi = math.NaN(), math.NaN()
		for _, th := range ths {
			if th.Field != out[i].Field {
				continue
			}
			out[i].Lo, out[i].Hi, out[i].HasRange = th.Low, th.High, true
		}
		if out[i].Value == "" || !out[i].HasRange {
			continue
		}
		v, err := strconv.ParseFloat(out[i].Value, 64)
		if err != nil {
			continue
		}
		out[i].Abnormal = (!math.IsNaN(out[i].Lo) && v < out[i].Lo) || (!math.IsNaN(out[i].Hi) && v > out[i].Hi)
	}
	return out
}

// vitalRange renders a bound for the page script's data attributes; ""
// for none.
func vitalRange(f float64) string {
	if math.IsNaN(f) {
		return ""
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

var (
	notifiedDetail  = regexp.MustCompile(`^(\w+) \(`)
	escalatedDetail = regexp.MustCompile(`^(reminder, )?policy (\S+) step (\d+): ([^;]*)`)
)

// historyWords renders one entry of an alert's history in lang from the
// alert and the entry's action: what happened for opened and repeated,
// the outcome for resolved, the event of a notification, the step and
// recipients of an escalation; a comment as written.
func historyWords(lang string, a alerting.Alert, h alerting.HistoryEntry) string {
	switch h.Action {
	case alerting.ActionOpened, alerting.ActionRepeated:
		return alertWhat(lang, a)
	case alerting.ActionResolved:
		if a.Outcome == "" {
			return ""
		}
		return trIn(lang, "outcome."+a.Outcome)
	case alerting.ActionNotified:
		if m := notifiedDetail.FindStringSubmatch(h.Detail); m != nil {
			return trIn(lang, "tl.event."+m[1])
		}
		return ""
	case alerting.ActionEscalated:
		if m := escalatedDetail.FindStringSubmatch(h.Detail); m != nil {
			key := "tl.escalated"
			if m[1] != "" {
				key = "tl.reminder"
			}
			return trf(lang, key, "policy", m[2], "step", m[3], "who", m[4])
		}
		return h.Detail
	case alerting.ActionAcknowledged:
		return ""
	}
	return h.Detail
}
