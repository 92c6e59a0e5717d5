// Stage 3, store: escalation. Opening an alert starts its policy; the Escalator fires due steps from the
// store (any replica), acknowledging or resolving stops it in the same transaction.

package alerting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Escalation notification events (besides those in alert.go).
const (
	// EventEscalated: an escalation step (after the first) paged its
	// recipients.
	EventEscalated = "escalated"
	// EventReminder: a reminder to everyone paged so far; the alert is
	// still not acknowledged.
	EventReminder = "reminder"
	// EventRepeating: the one notice of a flapping episode (see [Flapping]).
	EventRepeating = "repeating"
)

// History actions of escalation.
const (
	ActionEscalated = "escalated"
)

// Contact is a recipient as addressed in one notification.
type Contact struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	Lang     string `json:"lang,omitempty"`
	Email    string `json:"email,omitempty"`
	ChatID   string `json:"chat_id,omitempty"`
	Phone    string `json:"phone,omitempty"`
	WeCom    string `json:"wecom,omitempty"`
	DingTalk string `json:"dingtalk,omitempty"`
	InApp    bool   `json:"in_app,omitempty"`
}

// wecomID is the id to mention in WeCom ("" = none).
func (c Contact) wecomID() string {
	if c.WeCom != "" {
		return c.WeCom
	}
	return c.ChatID
}

// dingTalkID is the mobile number or user id to mention in DingTalk.
func (c Contact) dingTalkID() string {
	if c.DingTalk != "" {
		return c.DingTalk
	}
	if c.ChatID != "" {
		return c.ChatID
	}
	return c.Phone
}

// Escalation is the "escalation" member of a notification body: who this
// notification pages. Present on "opened" (first step at 0 s), "escalated",
// "reminder" and "repeating" notifications of alerts that an escalation
// policy covers.
type Escalation struct {
	Policy string `json:"policy"`
	// Step is the 0-based step index; reminders carry the last step's.
	Step     int  `json:"step"`
	Reminder bool `json:"reminder,omitempty"`
	// Shift is the roster shift on duty at the time of the step.
	Shift      string    `json:"shift,omitempty"`
	Recipients []Contact `json:"recipients"`
	// Quiet are the ids of recipients held back by their quiet hours (never
	// for critical alerts).
	Quiet []string `json:"quiet,omitempty"`
	// Fallback: the step's targets resolved to nobody, so the site's
	// fallback receivers (see [Fallback]) are paged instead and an
	// operations notice is recorded in the alert's history.
	Fallback bool `json:"fallback,omitempty"`
}

// Notice is the full JSON body of a notification: a [Change] plus, when an
// escalation policy pages people, the escalation member.
//
//	{"id":"alert-7-2","event":"escalated","alert":{...},"at":"...",
//	 "escalation":{"policy":"default","step":1,"shift":"night","recipients":[{"id":"lead",...}]}}
type Notice struct {
	Change
	Escalation *Escalation `json:"escalation,omitempty"`
}

// resolveTargets returns the contacts a set of policy targets names for
// alert a at t, in target order without repeats, and the ids held back by
// quiet hours (never for critical alerts). Family contacts (see
// [Recipient.Residents]) are kept only for alerts of their own residents,
// whichever target named them; people who cannot be paged are dropped.
func (s Settings) resolveTargets(targets []string, a Alert, t time.Time) (contacts []Contact, quiet []string) {
	var ids []string
	add := func(id string) {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, tg := range targets {
		switch kind, arg := splitTarget(tg); kind {
		case "on_duty":
			if sh, ok := s.onDutyAt(a.Site, s.wardOf(a), t); ok { // settings.go
				for _, id := range sh.OnDuty {
					add(id)
				}
			}
		case "ward": // wards.go
			if r, ok := s.wardRoster(a.Site, arg); ok {
				if sh, ok := r.ShiftAt(t); ok {
					for _, id := range sh.OnDuty {
						add(id)
					}
				}
			}
		case "role":
			for _, r := range s.Recipients {
				if r.Role == arg && (len(r.Sites) == 0 || slices.Contains(r.Sites, a.Site)) {
					add(r.ID)
				}
			}
		case "team":
			if tm, ok := s.team(arg); ok && (tm.Site == "" || tm.Site == a.Site) {
				for _, id := range tm.Members {
					add(id)
				}
			}
		case "account":
			add(arg)
		}
	}
	for _, id := range ids {
		r, ok := s.recipient(id)
		if !ok || !r.Reachable() {
			continue
		}
		if r.family() && (a.Resident == nil || !slices.Contains(r.Residents, *a.Resident)) {
			continue
		}
		if a.Severity != SeverityCritical && r.Quiet != nil && r.Quiet.Quiet(t) {
			quiet = append(quiet, id)
			continue
		}
		contacts = append(contacts, r.contact())
	}
	return contacts, quiet
}

// stepInfo builds the escalation member of step (>= len(p.Steps): a
// reminder to the recipients of every step). A step whose targets resolve
// to nobody at all pages the site's fallback receivers (Fallback set).
func (s Settings) stepInfo(p Policy, step int, a Alert, t time.Time) *Escalation {
	e := &Escalation{Policy: p.ID, Step: step, Shift: s.shiftAt(a.Site, s.wardOf(a), t)}
	var targets []string
	if step >= len(p.Steps) {
		e.Reminder, e.Step = true, len(p.Steps)-1
		for _, st := range p.Steps {
			targets = append(targets, st.Targets...)
		}
	} else {
		targets = p.Steps[step].Targets
	}
	e.Recipients, e.Quiet = s.resolveTargets(targets, a, t)
	if len(e.Recipients) == 0 && len(e.Quiet) == 0 {
		e.Fallback = true
		var fb []string
		for _, id := range s.fallback(a.Site) {
			fb = append(fb, "account:"+id)
		}
		// Fallback receivers are paged whatever their quiet hours.
		crit := a
		crit.Severity = SeverityCritical
		e.Recipients, _ = s.resolveTargets(fb, crit, t)
	}
	if e.Recipients == nil {
		e.Recipients = []Contact{}
	}
	return e
}

// unreachedNote is the history text of a step that reached nobody.
func unreachedNote(e *Escalation) string {
	return fmt.Sprintf("operations: escalation policy %s step %d reached nobody on duty; paged the site's fallback receivers: %s; raised an %s alert", e.Policy, e.Step, contactIDs(e.Recipients), TypeEscalationUnrouted)
}

// nextDue returns when step fires (>= len(p.Steps): reminder number
// step-len(p.Steps)+1), or false when nothing follows. prevDue is the due
// time of the step before it.
func nextDue(p Policy, step int, opened, prevDue time.Time, now time.Time) (time.Time, bool) {
	if step < len(p.Steps) {
		return opened.Add(time.Duration(p.Steps[step].After)), true
	}
	if p.Repeat <= 0 {
		return time.Time{}, false
	}
	due := prevDue.Add(time.Duration(p.Repeat))
	if !due.After(now) { // after a long outage: one reminder now, not a burst
		due = now.Add(time.Duration(p.Repeat))
	}
	return due, true
}

// onOpened runs inside the transaction that created alert id: it records
// the shift on duty, applies flapping detection and starts the escalation.
// It returns the event to announce ("" = none: suppressed while flapping)
// and the escalation member of that notification.
func (m *Manager) onOpened(ctx context.Context, tx *sql.Tx, id int64, now time.Time, spec openSpec, s Settings) (string, *Escalation, string, error) {
	a, err := getAlert(ctx, m.db, tx, id)
	if err != nil {
		return "", nil, "", err
	}
	event, flap, note := EventOpened, "", ""
	if f := s.flapping(); f.Transitions > 0 && spec.Severity != SeverityCritical {
		since := now.Add(-time.Duration(f.Window)).UnixMilli()
		var n int
		if err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT COUNT(*) FROM alerts WHERE dedup_key = ? AND opened_ms >= ? AND id <> ?`), spec.Key, since, id).Scan(&n); err != nil {
			return "", nil, "", fmt.Errorf("count recent openings: %w", err)
		}
		if n+1 >= f.Transitions {
			var noticed int
			if err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT COUNT(*) FROM alerts WHERE dedup_key = ? AND opened_ms >= ? AND flap IN ('repeating', 'suppressed') AND id <> ?`),
				spec.Key, since, id).Scan(&noticed); err != nil {
				return "", nil, "", fmt.Errorf("check flapping episode: %w", err)
			}
			if noticed == 0 {
				event, flap = EventRepeating, "repeating"
				note = fmt.Sprintf(" (flapping: opened %d times within %s; further openings are not notified)", n+1, time.Duration(f.Window))
			} else {
				event, flap = "", "suppressed"
				note = fmt.Sprintf(" (flapping: opened %d times within %s; not notified)", n+1, time.Duration(f.Window))
			}
		}
	}
	shift := s.shiftAt(a.Site, s.wardOf(a), now)
	if _, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET shift = ?, flap = ? WHERE id = ?`), shift, flap, id); err != nil {
		return "", nil, "", fmt.Errorf("record shift: %w", err)
	}
	if event == "" {
		return "", nil, note, nil
	}
	p, ok := s.policyFor(a)
	if !ok {
		return event, nil, note, nil
	}
	var info *Escalation
	step := 0
	if p.Steps[0].After == 0 {
		info = s.stepInfo(p, 0, a, now)
		step = 1
		if info.Fallback {
			m.log.Error("alerting: first escalation step reached nobody; paging the fallback receivers", "alert", id, "policy", p.ID)
			if err := m.addHistory(ctx, tx, id, now.UnixMilli(), ActorSystem, ChannelRule, ActionComment, unreachedNote(info)); err != nil {
				return "", nil, "", err
			}
			if _, err := m.raiseUnrouted(ctx, tx, s, a, info, now); err != nil { // unrouted.go
				return "", nil, "", err
			}
		}
	}
	var next any
	if due, ok := nextDue(p, step, a.OpenedAt, a.OpenedAt, now); ok {
		next = due.UnixMilli()
	}
	if _, err := tx.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_escalations (alert_id, policy_id, step, next_ms) VALUES (?, ?, ?, ?)`),
		id, p.ID, step, next); err != nil {
		return "", nil, "", fmt.Errorf("start escalation: %w", err)
	}
	return event, info, note, nil
}

// handlers returns the escalation member of a "repeated" notice of alert a
// (a new fall or SOS while it is open): whoever is handling it. When it is
// acknowledged by a recipient of the settings, that recipient; otherwise
// everyone its escalation has paged so far (the steps fired). nil when no
// policy covers it or nobody was paged yet.
func (m *Manager) handlers(ctx context.Context, tx *sql.Tx, a Alert, s Settings, now time.Time) (*Escalation, error) {
	var policyID string
	var step int
	err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT policy_id, step FROM alert_escalations WHERE alert_id = ?`), a.ID).Scan(&policyID, &step)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("escalation of alert %d: %w", a.ID, err)
	}
	p, ok := s.policy(policyID)
	if !ok || step <= 0 {
		return nil, nil
	}
	fired := min(step, len(p.Steps))
	e := &Escalation{Policy: p.ID, Step: fired - 1, Shift: s.shiftAt(a.Site, s.wardOf(a), now)}
	if a.Status == StatusAcknowledged {
		if r, ok := s.recipient(a.AcknowledgedBy); ok {
			e.Recipients = []Contact{r.contact()}
			return e, nil
		}
	}
	var targets []string
	for _, st := range p.Steps[:fired] {
		targets = append(targets, st.Targets...)
	}
	e.Recipients, e.Quiet = s.resolveTargets(targets, a, now)
	if e.Recipients == nil {
		e.Recipients = []Contact{}
	}
	return e, nil
}

// stopEscalation cancels whatever is pending for alert id (inside the
// acknowledging or resolving transaction).
func (m *Manager) stopEscalation(ctx context.Context, tx *sql.Tx, id int64) error {
	if _, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alert_escalations SET next_ms = NULL WHERE alert_id = ?`), id); err != nil {
		return fmt.Errorf("stop escalation: %w", err)
	}
	return nil
}

// Escalator fires due escalation steps and reminders. Its state lives in
// the store (alert_escalations), so a restart neither loses nor repeats a
// step, and several replicas may run one each: a step fires only through
// an UPDATE that matches the step it read, inside a transaction that first
// locks the alert row and finds it open. An acknowledgement committed
// before that transaction therefore stops the step; one committed after it
// comes after the step was announced.
type Escalator struct {
	m     *Manager
	now   func() time.Time
	every time.Duration
	log   *slog.Logger
}

// NewEscalator returns an escalator that checks every period (0 = 1 s)
// on the clock now (nil = time.Now).
func NewEscalator(m *Manager, now func() time.Time, every time.Duration, log *slog.Logger) *Escalator {
	if now == nil {
		now = time.Now
	}
	if every <= 0 {
		every = time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &Escalator{m: m, now: now, every: every, log: log}
}

// EventKeyRetention is how long the (device, boot, seq) of a raised event
// is kept to drop redeliveries: 30 days, far longer than any spool or
// persistent session keeps a message.
const EventKeyRetention = 30 * 24 * time.Hour

// Run fires due steps every period until ctx is cancelled; it returns nil
// then. Every 10 min it also forgets event keys older than
// EventKeyRetention.
func (e *Escalator) Run(ctx context.Context) error {
	t := time.NewTicker(e.every)
	defer t.Stop()
	var pruned time.Time
	var every logLimit
	for {
		if _, err := e.Fire(ctx); err != nil && ctx.Err() == nil && every.allow(time.Now()) {
			e.log.Error("alerting: escalation (logged at most once a minute)", "err", err)
		}
		if now := e.now(); now.Sub(pruned) > 10*time.Minute {
			pruned = now
			if err := e.m.pruneEventKeys(ctx, now.Add(-EventKeyRetention)); err != nil && ctx.Err() == nil {
				e.log.Error("alerting: prune event keys", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Fire fires every step and reminder due at e's clock and returns how many
// it fired. Steps that fell due during an outage fire now, in order, each
// once.
func (e *Escalator) Fire(ctx context.Context) (int, error) {
	var total int
	for range 100 {
		n, err := e.fireDue(ctx)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
	}
	return total, nil
}

func (e *Escalator) fireDue(ctx context.Context) (int, error) {
	m := e.m
	now := e.now()
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT e.alert_id, e.step, e.next_ms FROM alert_escalations e
		JOIN alerts a ON a.id = e.alert_id
		WHERE e.next_ms IS NOT NULL AND e.next_ms <= ? AND a.status = 'open' ORDER BY e.next_ms LIMIT 200`), now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("read due escalations: %w", err)
	}
	type due struct {
		id     int64
		step   int
		nextMS int64
	}
	var list []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.step, &d.nextMS); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read due escalations: %w", err)
		}
		list = append(list, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read due escalations: %w", err)
	}
	s, err := m.currentSettings(ctx)
	if err != nil {
		return 0, err
	}
	var n int
	for _, d := range list {
		fired, err := e.fireOne(ctx, s, d.id, d.step, d.nextMS, now)
		if err != nil {
			return n, fmt.Errorf("escalate alert %d step %d: %w", d.id, d.step, err)
		}
		if fired {
			n++
		}
	}
	if n > 0 {
		m.signal()
	}
	return n, nil
}

var errSettled = errors.New("settled")

func (e *Escalator) fireOne(ctx context.Context, s Settings, id int64, step int, dueMS int64, now time.Time) (bool, error) {
	m := e.m
	fired := false
	err := m.tx(ctx, func(tx *sql.Tx) error {
		// Lock the alert row (PostgreSQL waits here for a concurrent
		// acknowledgement and then re-checks the status).
		res, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET history_seq = history_seq WHERE id = ? AND status = 'open'`), id)
		if err != nil {
			return fmt.Errorf("lock alert: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			_, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alert_escalations SET next_ms = NULL WHERE alert_id = ?`), id)
			return err
		}
		var policyID string
		if err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT policy_id FROM alert_escalations WHERE alert_id = ?`), id).Scan(&policyID); err != nil {
			return fmt.Errorf("read escalation: %w", err)
		}
		a, err := getAlert(ctx, m.db, tx, id)
		if err != nil {
			return err
		}
		p, ok := s.policy(policyID)
		var next any
		if ok {
			if d, more := nextDue(p, step+1, a.OpenedAt, time.UnixMilli(dueMS), now); more {
				next = d.UnixMilli()
			}
		}
		res, err = tx.ExecContext(ctx, m.db.Rebind(`UPDATE alert_escalations SET step = step + 1, next_ms = ?,
			reminders = reminders + ? WHERE alert_id = ? AND step = ? AND next_ms = ?`), next, boolInt(step >= len(p.Steps)), id, step, dueMS)
		if err != nil {
			return fmt.Errorf("advance escalation: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return errSettled // another replica fired it
		}
		if !ok { // the policy was deleted: stop, page nobody
			return m.addHistory(ctx, tx, id, now.UnixMilli(), ActorSystem, ChannelRule, ActionComment, "escalation stopped: policy "+policyID+" no longer exists")
		}
		info := s.stepInfo(p, step, a, now)
		event := EventEscalated
		if info.Reminder {
			event = EventReminder
		}
		detail := fmt.Sprintf("policy %s step %d: %s", p.ID, info.Step, contactIDs(info.Recipients))
		if info.Reminder {
			detail = "reminder, " + detail
		}
		if len(info.Quiet) > 0 {
			detail += "; quiet hours: " + strings.Join(info.Quiet, ", ")
		}
		if err := m.addHistory(ctx, tx, id, now.UnixMilli(), ActorSystem, ChannelRule, ActionEscalated, detail); err != nil {
			return err
		}
		if info.Fallback {
			m.log.Error("alerting: escalation step reached nobody; paging the fallback receivers", "alert", id, "policy", p.ID, "step", info.Step, "fallback", contactIDs(info.Recipients))
			if err := m.addHistory(ctx, tx, id, now.UnixMilli(), ActorSystem, ChannelRule, ActionComment, unreachedNote(info)); err != nil {
				return err
			}
			if _, err := m.raiseUnrouted(ctx, tx, s, a, info, now); err != nil { // unrouted.go
				return err
			}
		}
		_, err = m.enqueueWith(ctx, tx, id, event, now.UnixMilli(), info)
		fired = err == nil
		return err
	})
	if errors.Is(err, errSettled) {
		return false, nil
	}
	return fired, err
}

func contactIDs(cs []Contact) string {
	if len(cs) == 0 {
		return "nobody"
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return strings.Join(ids, ", ")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// EscalationState is the persisted escalation of one alert.
type EscalationState struct {
	Policy string `json:"policy"`
	// NextStep is the index of the next step (>= the policy's step count:
	// a reminder).
	NextStep  int `json:"next_step"`
	Reminders int `json:"reminders"`
	// Due is when the next step fires; nil when nothing is pending.
	Due *time.Time `json:"due"`
}

// Escalation returns the escalation state of alert id, or false when no
// policy covers it.
func (m *Manager) Escalation(ctx context.Context, id int64) (EscalationState, bool, error) {
	var st EscalationState
	var next sql.NullInt64
	err := m.db.QueryRowContext(ctx, m.db.Rebind(`SELECT policy_id, step, reminders, next_ms FROM alert_escalations WHERE alert_id = ?`), id).
		Scan(&st.Policy, &st.NextStep, &st.Reminders, &next)
	if errors.Is(err, sql.ErrNoRows) {
		return EscalationState{}, false, nil
	}
	if err != nil {
		return EscalationState{}, false, fmt.Errorf("escalation of alert %d: %w", id, err)
	}
	if next.Valid {
		t := time.UnixMilli(next.Int64).UTC()
		st.Due = &t
	}
	return st, true, nil
}

// pruneEventKeys forgets the event keys recorded before cutoff.
func (m *Manager) pruneEventKeys(ctx context.Context, cutoff time.Time) error {
	defer m.lockWrites()()
	_, err := m.db.ExecContext(ctx, m.db.Rebind(`DELETE FROM alert_event_keys WHERE at_ms < ?`), cutoff.UnixMilli())
	return err
}
