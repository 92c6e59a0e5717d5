// Stage 3, store: response-time reports read from the alert store (acknowledged how fast, by whom).

package alerting

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Delivery is the delivery status of one notification at one receiver, or
// (Recipient set) at one recipient of a receiver that addresses people.
type Delivery struct {
	NotificationID string `json:"notification_id"`
	Event          string `json:"event"`
	Receiver       string `json:"receiver"`
	// Recipient and Address are set for per-recipient rows (e-mail).
	Recipient string `json:"recipient,omitempty"`
	Address   string `json:"address,omitempty"`
	// Status is pending, sent, skipped, retrying or failed.
	Status    string    `json:"status"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Deliveries returns every delivery of alert id's notifications, oldest
// notification first, receiver rows before their per-recipient rows.
func (m *Manager) Deliveries(ctx context.Context, id int64) ([]Delivery, error) {
	if _, err := m.Get(ctx, id); err != nil {
		return nil, err
	}
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT o.seq, o.id, o.event, d.receiver, '', '', d.status, d.attempts, d.last_error, d.updated_ms
		FROM alert_outbox o JOIN alert_deliveries d ON d.notification_id = o.id WHERE o.alert_id = ?
		UNION ALL
		SELECT o.seq, o.id, o.event, r.receiver, r.recipient_id, r.address, r.status, r.attempts, r.last_error, r.updated_ms
		FROM alert_outbox o JOIN alert_recipient_deliveries r ON r.notification_id = o.id WHERE o.alert_id = ?`), id, id)
	if err != nil {
		return nil, fmt.Errorf("deliveries of alert %d: %w", id, err)
	}
	defer rows.Close()
	type row struct {
		seq int64
		d   Delivery
	}
	var list []row
	for rows.Next() {
		var r row
		var at int64
		if err := rows.Scan(&r.seq, &r.d.NotificationID, &r.d.Event, &r.d.Receiver, &r.d.Recipient, &r.d.Address, &r.d.Status,
			&r.d.Attempts, &r.d.LastError, &at); err != nil {
			return nil, fmt.Errorf("deliveries of alert %d: %w", id, err)
		}
		r.d.UpdatedAt = time.UnixMilli(at).UTC()
		list = append(list, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("deliveries of alert %d: %w", id, err)
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.seq != b.seq {
			return a.seq < b.seq
		}
		if a.d.Receiver != b.d.Receiver {
			return a.d.Receiver < b.d.Receiver
		}
		return a.d.Recipient < b.d.Recipient
	})
	out := make([]Delivery, len(list))
	for i, r := range list {
		out[i] = r.d
	}
	return out, nil
}

// ResponseStat aggregates response times of one group of alerts. Times are
// from the alert's opening; p50 and p90 are nearest-rank percentiles over
// the alerts that were acknowledged (resolved) at all; nil when none was.
type ResponseStat struct {
	// Dimension is site, shift (the roster shift on duty when the alert
	// opened; "" = no roster), receiver (the channel the acknowledgement
	// came from, e.g. dashboard, api; "" = never acknowledged) or
	// responder (who acknowledged).
	Dimension string `json:"dimension"`
	Key       string `json:"key"`
	// Alerts counts the alerts of the group opened in the period;
	// Acknowledged and Resolved how many of them were.
	Alerts       int            `json:"alerts"`
	Acknowledged int            `json:"acknowledged"`
	Resolved     int            `json:"resolved"`
	AckP50       *time.Duration `json:"ack_p50"`
	AckP90       *time.Duration `json:"ack_p90"`
	ResolveP50   *time.Duration `json:"resolve_p50"`
	ResolveP90   *time.Duration `json:"resolve_p90"`
}

// ResponseTimes returns time to acknowledge and time to resolve of the
// alerts opened in [from, to), by site, shift, receiver and responder (see
// [ResponseStat]), each dimension sorted by key. An alert a person resolved
// without an acknowledgement counts its resolution time as its
// acknowledgement (someone responded); one resolved by the system (a rule
// clearing it) has no acknowledgement time, as in [Manager.AlertResponses].
func (m *Manager) ResponseTimes(ctx context.Context, from, to time.Time) ([]ResponseStat, error) {
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT a.site_id, a.shift, a.opened_ms, a.acknowledged_ms, a.acknowledged_by, a.resolved_ms, a.resolved_by,
			COALESCE((SELECT h.channel FROM alert_history h WHERE h.alert_id = a.id AND h.action IN ('acknowledged', 'resolved') AND h.actor <> ? ORDER BY h.seq LIMIT 1), '')
		FROM alerts a WHERE a.opened_ms >= ? AND a.opened_ms < ?`), ActorSystem, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("response times: %w", err)
	}
	defer rows.Close()
	type group struct {
		alerts     int
		ack, resol []time.Duration
	}
	groups := map[[2]string]*group{}
	get := func(dim, key string) *group {
		g := groups[[2]string{dim, key}]
		if g == nil {
			g = &group{}
			groups[[2]string{dim, key}] = g
		}
		return g
	}
	for rows.Next() {
		var site, shift, by, resolvedBy, channel string
		var opened int64
		var acked, resolved sql.NullInt64
		if err := rows.Scan(&site, &shift, &opened, &acked, &by, &resolved, &resolvedBy, &channel); err != nil {
			return nil, fmt.Errorf("response times: %w", err)
		}
		ackAt := acked
		if !ackAt.Valid && resolvedBy != ActorSystem {
			ackAt = resolved // a person resolved it without acknowledging: that was the response
		}
		responder := by
		if !acked.Valid && resolved.Valid {
			responder = "" // resolved directly; the resolver is not the acknowledger
		}
		for _, dk := range [][2]string{{"site", site}, {"shift", shift}, {"receiver", channel}, {"responder", responder}} {
			g := get(dk[0], dk[1])
			g.alerts++
			if ackAt.Valid {
				g.ack = append(g.ack, time.Duration(ackAt.Int64-opened)*time.Millisecond)
			}
			if resolved.Valid {
				g.resol = append(g.resol, time.Duration(resolved.Int64-opened)*time.Millisecond)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("response times: %w", err)
	}
	var out []ResponseStat
	for k, g := range groups {
		st := ResponseStat{Dimension: k[0], Key: k[1], Alerts: g.alerts, Acknowledged: len(g.ack), Resolved: len(g.resol)}
		st.AckP50, st.AckP90 = percentile(g.ack, 50), percentile(g.ack, 90)
		st.ResolveP50, st.ResolveP90 = percentile(g.resol, 50), percentile(g.resol, 90)
		out = append(out, st)
	}
	dimOrder := []string{"site", "shift", "receiver", "responder"}
	slices.SortFunc(out, func(a, b ResponseStat) int {
		if a.Dimension != b.Dimension {
			return slices.Index(dimOrder, a.Dimension) - slices.Index(dimOrder, b.Dimension)
		}
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out, nil
}

// percentile is the nearest-rank p-th percentile of ds (nil when empty).
func percentile(ds []time.Duration, p float64) *time.Duration {
	if len(ds) == 0 {
		return nil
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = max(rank, 1)
	v := s[rank-1]
	return &v
}
