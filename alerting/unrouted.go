// Stage 3, store: a step that resolves to nobody at alert time. Besides
// paging the site's fallback receivers (escalation.go), it raises one
// operations alert per site, policy and step, so the gap in the roster or
// the policy is seen and fixed, never passed over in silence.

package alerting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// TypeEscalationUnrouted is the operations alert (severity high, no
// resident, site-level) of an escalation step that resolved to nobody when
// it fired: nobody on duty, nobody with the role or in the team, every
// account named without a contact, or all of them held back. Its device is
// "escalation:<policy>:<step>", so its dedup key is per site, policy and
// step: while it is open, each further unrouted firing of that step counts
// as a repeat in its history, without a new notification. Its notification
// pages the site's admins and managers (recipients with role admin or
// manager at the site) and the site's fallback receivers; it is never
// escalated itself.
const TypeEscalationUnrouted = "escalation_unrouted"

// operationsRoles are the recipient roles an operations alert pages.
var operationsRoles = []string{"admin", "manager"}

// unroutedDevice is the device id of the unrouted alert of step of policy.
func unroutedDevice(policy string, step int) string {
	return fmt.Sprintf("escalation:%s:%d", policy, step)
}

// raiseUnrouted runs in the transaction of the escalation step info of
// alert a that resolved to nobody: it counts the step once the transaction
// commits (eldercare_alerting_unrouted_steps_total) and opens the site's
// escalation_unrouted alert of that policy and step, or adds a repeat to
// the open one. It reports whether a notification was queued.
func (m *Manager) raiseUnrouted(ctx context.Context, tx *sql.Tx, s Settings, a Alert, info *Escalation, now time.Time) (bool, error) {
	m.onCommit(tx, func() { // a rolled-back attempt is retried: count the step once
		if sm := m.metrics.Load(); sm != nil && sm.unrouted != nil {
			sm.unrouted.Inc()
		}
	})
	dev := unroutedDevice(info.Policy, info.Step)
	key := "site:" + a.Site + ":" + dev + ":" + TypeEscalationUnrouted
	nowMS := now.UnixMilli()
	detail := fmt.Sprintf("escalation policy %s step %d reached nobody for alert %d (%s at site %s); paged the site's fallback receivers: %s. Check the roster, the teams and the staff contacts the step names.",
		info.Policy, info.Step, a.ID, a.Type, a.Site, contactIDs(info.Recipients))
	repeat := func(id int64) (bool, error) {
		if _, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET repeat_count = repeat_count + 1, last_occurred_ms = ? WHERE id = ?`), nowMS, id); err != nil {
			return false, fmt.Errorf("count unrouted repeat: %w", err)
		}
		return false, m.addHistory(ctx, tx, id, nowMS, ActorSystem, ChannelRule, ActionRepeated, detail)
	}
	id, found, err := m.openByKey(ctx, tx, key)
	if err != nil {
		return false, err
	}
	if found {
		return repeat(id)
	}
	if err := tx.QueryRowContext(ctx, m.db.Rebind(`UPDATE alerting_counters SET value = value + 1 WHERE name = 'alert' RETURNING value`)).Scan(&id); err != nil {
		return false, fmt.Errorf("allocate alert id: %w", err)
	}
	var inserted int64
	err = tx.QueryRowContext(ctx, m.db.Rebind(`INSERT INTO alerts (id, dedup_key, site_id, resident_id, device_id, type, severity, status, opened_ms, detail, value_num, last_occurred_ms)
		VALUES (?, ?, ?, NULL, ?, ?, ?, 'open', ?, ?, NULL, ?)
		ON CONFLICT (dedup_key) WHERE status <> 'resolved' DO NOTHING
		RETURNING id`), id, key, a.Site, dev, TypeEscalationUnrouted, SeverityHigh, nowMS, detail, nowMS).Scan(&inserted)
	if errors.Is(err, sql.ErrNoRows) {
		// Another replica opened it first (PostgreSQL waited for it).
		if id, found, err = m.openByKey(ctx, tx, key); err != nil {
			return false, err
		}
		if !found {
			return false, fmt.Errorf("open unrouted alert %s: conflict on a key that is not open", key)
		}
		return repeat(id)
	}
	if err != nil {
		return false, fmt.Errorf("insert unrouted alert: %w", err)
	}
	if err := m.addHistory(ctx, tx, id, nowMS, ActorSystem, ChannelRule, ActionOpened, detail); err != nil {
		return false, err
	}
	esc := s.operationsInfo(a.Site, info.Policy, now)
	if len(esc.Recipients) == 0 {
		// The operations alert reaches nobody either: said in its
		// timeline and the log, never raised again for itself (no loop).
		m.log.Error("alerting: the escalation_unrouted alert reaches nobody either: the site has no reachable admin, manager or fallback receiver",
			"alert", id, "site", a.Site, "policy", info.Policy, "step", info.Step)
		if err := m.addHistory(ctx, tx, id, nowMS, ActorSystem, ChannelRule, ActionComment, fmt.Sprintf(
			"operations: this alert reaches nobody either: site %s has no reachable admin or manager recipient and no fallback receiver; it shows on the dashboard and in the webhook only", a.Site)); err != nil {
			return false, err
		}
	}
	_, err = m.enqueueWith(ctx, tx, id, EventOpened, nowMS, esc)
	return err == nil, err
}

// operationsInfo is the escalation member of an operations alert at site:
// the site's admins and managers and its fallback receivers, paged
// whatever their quiet hours.
func (s Settings) operationsInfo(site, policy string, t time.Time) *Escalation {
	var targets []string
	for _, r := range s.Recipients {
		if slices.Contains(operationsRoles, r.Role) && (len(r.Sites) == 0 || slices.Contains(r.Sites, site)) {
			targets = append(targets, "account:"+r.ID)
		}
	}
	for _, id := range s.fallback(site) {
		targets = append(targets, "account:"+id)
	}
	ops := Alert{Site: site, Type: TypeEscalationUnrouted, Severity: SeverityCritical}
	e := &Escalation{Policy: policy, Step: 0, Shift: s.shiftAt(site, "", t)}
	e.Recipients, _ = s.resolveTargets(targets, ops, t)
	if e.Recipients == nil {
		e.Recipients = []Contact{}
	}
	return e
}
