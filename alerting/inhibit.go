// Stage 2, rules: one cause, one page. A vitals rule that fires for a
// resident who already has an open vitals alert from the last few minutes
// adds its finding to that alert instead of opening (and paging) another.

package alerting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// InhibitGroup are the alert types one physiological cause raises together
// (a hypoxaemia breaches spo2_low and scores NEWS2 3 for SpO2). The rule, in
// Alertmanager's terms: source and target match type in InhibitGroup, equal
// on the resident (the device when unassigned); the source is the alert of
// the group that is already open, opened at most InhibitWindow ago; the
// target is any other rule of the group that fires for the same resident
// while it is open. Whichever fires first pages; the later ones are added to
// it as findings (detail "...; also news2: NEWS2 7 (...)" and a history
// comment) and send no notification. A target that fires when the source is
// older than the window, or resolved, opens its own alert.
var InhibitGroup = []string{TypeSpO2Low, TypeHeartRate, TypeRespiration, TypeNEWS2}

// DefaultInhibitWindow is how recently the source alert must have opened
// for a further vitals rule to count as the same cause: 10 min, ours (it
// covers the NEWS2 median and sustain, 3 min, after a threshold rule fires,
// with room for a slower second parameter).
const DefaultInhibitWindow = 10 * time.Minute

// absorbedKey is a finding (alert type) already added to an alert.
type absorbedKey struct {
	alert int64
	typ   string
}

// raiseVitals raises spec (a vitals rule: a type of InhibitGroup) unless an
// open alert of the group for the same resident inhibits it; then the
// finding is added to that alert. absorbed reports the latter.
func (s *Service) raiseVitals(ctx context.Context, spec openSpec) (absorbed bool, err error) {
	var resident *string
	if r, ok := s.residentOf(spec.Device, spec.At); ok {
		resident = &r
	}
	type source struct {
		key string
		id  int64
	}
	var sources []source
	s.mu.Lock()
	if _, own := s.open[alertKey(resident, spec.Device, spec.Type)]; !own {
		for _, typ := range InhibitGroup {
			if typ == spec.Type {
				continue
			}
			k := alertKey(resident, spec.Device, typ)
			if id, ok := s.open[k]; ok {
				sources = append(sources, source{k, id})
			}
		}
	}
	s.mu.Unlock()
	slices.SortFunc(sources, func(a, b source) int { return int(a.id - b.id) }) // the oldest first
	for _, src := range sources {
		ak := absorbedKey{src.id, spec.Type}
		s.rules.mu.Lock()
		done := s.rules.absorbed[ak]
		s.rules.mu.Unlock()
		if done {
			return true, nil
		}
		var found bool
		err := s.durably(ctx, "finding "+spec.Type+" on "+src.key, func(ctx context.Context) error {
			var err error
			found, err = s.m.addFinding(ctx, src.id, s.rules.cfg.InhibitWindow, spec)
			return err
		})
		if err != nil {
			return false, err
		}
		if !found {
			continue
		}
		s.rules.mu.Lock()
		s.rules.absorbed[ak] = true
		s.rules.mu.Unlock()
		s.rules.artefactMetrics.inhibited.WithLabelValues(spec.Type).Inc()
		s.log.Info("alerting: vitals finding added to the open alert of the same resident (one cause, one page)",
			"alert", src.id, "source", src.key, "inhibited", spec.Type, "detail", spec.Detail)
		return true, nil
	}
	return false, s.raise(ctx, spec)
}

// findingMarker starts the finding of typ in an alert's detail.
func findingMarker(typ string) string { return "; also " + typ + ": " }

// addFinding adds spec's finding to alert id when it is open and was opened
// at most window ago (store time): its detail gains "; also <type>:
// <detail>" (once per type) and its history a system comment. Nothing is
// queued for the receivers. found is false when the alert is resolved, too
// old, or missing.
func (m *Manager) addFinding(ctx context.Context, id int64, window time.Duration, spec openSpec) (found bool, err error) {
	err = m.tx(ctx, func(tx *sql.Tx) error {
		now := m.now()
		var status, detail string
		var openedMS int64
		err := tx.QueryRowContext(ctx, m.db.Rebind(`SELECT status, opened_ms, detail FROM alerts WHERE id = ?`), id).Scan(&status, &openedMS, &detail)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if status == StatusResolved || now.Sub(time.UnixMilli(openedMS)) > window {
			return nil
		}
		found = true
		if !strings.Contains(detail, findingMarker(spec.Type)) {
			if _, err := tx.ExecContext(ctx, m.db.Rebind(`UPDATE alerts SET detail = ? WHERE id = ?`),
				detail+findingMarker(spec.Type)+spec.Detail, id); err != nil {
				return err
			}
		}
		return m.addHistory(ctx, tx, id, now.UnixMilli(), ActorSystem, ChannelRule, ActionComment,
			fmt.Sprintf("%s also fired (same resident, one cause: not paged separately): %s", spec.Type, spec.Detail))
	})
	if err != nil {
		return false, fmt.Errorf("add %s finding to alert %d: %w", spec.Type, id, err)
	}
	return found, nil
}
