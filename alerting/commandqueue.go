// Commands across processes (issue 13): every tracked command's state is
// kept in table alert_commands, so a dashboard in another process shows
// it; and a dashboard without an alerting service in its process requests
// a command there (Manager.SendCommand, state requested), which one
// alerting replica claims at its next command tick and sends and tracks as
// its own (Service.SendCommand).

package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// CommandRequested: a command requested by a dashboard, not yet claimed by
// an alerting service.
const CommandRequested CommandState = "requested"

// maxListedCommands bounds Manager.Commands.
const maxListedCommands = 200

// SendCommand requests a command (see Service.SendCommand) for an alerting
// service to send: it is stored as requested and returned id is its id.
// The alerting service claims it within CommandConfig.Tick and tracks it;
// Commands shows its state. Errors: an invalid command
// (device.NewCommand), database errors. With this, *Manager is the
// command sender of a dashboard running apart from alerting.
func (m *Manager) SendCommand(ctx context.Context, site, dev string, action device.Action, params map[string]any, alertID int64, actor string) (string, error) {
	id, err := newCommandID()
	if err != nil {
		return "", err
	}
	now := m.now()
	if _, err := device.NewCommand(id, dev, action, params, now, time.Minute); err != nil {
		return "", err
	}
	p := ""
	if len(params) > 0 {
		b, err := json.Marshal(params)
		if err != nil {
			return "", fmt.Errorf("command params: %w", err)
		}
		p = string(b)
	}
	if actor == "" {
		actor = ActorSystem
	}
	_, err = m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_commands (id, site_id, device_id, action, params, alert_id, actor, state, tries, detail, updated_ms, claimed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, '', ?, FALSE)`), id, site, dev, string(action), p, alertID, actor, string(CommandRequested), now.UnixMilli())
	if err != nil {
		return "", fmt.Errorf("request command %s to %s: %w", action, dev, err)
	}
	return id, nil
}

// Commands returns the commands of alert alertID (0: all) updated in the
// last 24 hours, newest first, at most maxListedCommands, from the store
// (so it sees every process's commands). A database error gives none.
func (m *Manager) Commands(alertID int64) []CommandStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q := `SELECT id, site_id, device_id, action, alert_id, actor, state, tries, detail, updated_ms FROM alert_commands WHERE updated_ms >= ?`
	args := []any{m.now().Add(-24 * time.Hour).UnixMilli()}
	if alertID != 0 {
		q += ` AND alert_id = ?`
		args = append(args, alertID)
	}
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(q+` ORDER BY updated_ms DESC, id LIMIT ?`), append(args, maxListedCommands)...)
	if err != nil {
		m.log.Warn("alerting: list commands", "err", err)
		return nil
	}
	defer rows.Close()
	var out []CommandStatus
	for rows.Next() {
		var st CommandStatus
		var ms int64
		var action, state string
		if err := rows.Scan(&st.ID, &st.Site, &st.Device, &action, &st.AlertID, &st.Actor, &state, &st.Tries, &st.Detail, &ms); err != nil {
			m.log.Warn("alerting: list commands", "err", err)
			return out
		}
		st.Action, st.State, st.Updated = device.Action(action), CommandState(state), time.UnixMilli(ms).UTC()
		out = append(out, st)
	}
	return out
}

// putCommandState records st (claimed).
func (m *Manager) putCommandState(ctx context.Context, st CommandStatus) error {
	_, err := m.db.ExecContext(ctx, m.db.Rebind(`INSERT INTO alert_commands (id, site_id, device_id, action, params, alert_id, actor, state, tries, detail, updated_ms, claimed)
		VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, TRUE)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, tries = excluded.tries, detail = excluded.detail,
		updated_ms = excluded.updated_ms, claimed = TRUE`),
		st.ID, st.Site, st.Device, string(st.Action), st.AlertID, st.Actor, string(st.State), st.Tries, st.Detail, st.Updated.UnixMilli())
	if err != nil {
		return fmt.Errorf("record command %s: %w", st.ID, err)
	}
	return nil
}

// queuedCommand is a requested command claimed by this process.
type queuedCommand struct {
	id, site, dev, actor string
	action               device.Action
	params               map[string]any
	alertID              int64
}

// claimCommands claims the requested commands no one has claimed that were
// requested at notBefore or later (an older one is not sent late:
// expireCommands fails it); each is claimed by exactly one caller (the
// UPDATE's row count decides).
func (m *Manager) claimCommands(ctx context.Context, notBefore time.Time) ([]queuedCommand, error) {
	rows, err := m.db.QueryContext(ctx, m.db.Rebind(`SELECT id, site_id, device_id, action, params, alert_id, actor FROM alert_commands
		WHERE claimed = FALSE AND state = 'requested' AND updated_ms >= ? ORDER BY updated_ms LIMIT 50`), notBefore.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("list requested commands: %w", err)
	}
	var cands []queuedCommand
	for rows.Next() {
		var q queuedCommand
		var action, params string
		if err := rows.Scan(&q.id, &q.site, &q.dev, &action, &params, &q.alertID, &q.actor); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list requested commands: %w", err)
		}
		q.action = device.Action(action)
		if params != "" {
			if err := json.Unmarshal([]byte(params), &q.params); err != nil {
				q.params = nil
			}
		}
		cands = append(cands, q)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var out []queuedCommand
	for _, q := range cands {
		res, err := m.db.ExecContext(ctx, m.db.Rebind(`UPDATE alert_commands SET claimed = TRUE WHERE id = ? AND claimed = FALSE`), q.id)
		if err != nil {
			return out, fmt.Errorf("claim command %s: %w", q.id, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			out = append(out, q)
		}
	}
	return out, nil
}

// Details of the commands expireCommands fails.
const (
	detailRequestExpired = "not sent: no alerting service sent it within %s of the request (it would arrive late); request it again if it is still needed"
	detailAbandoned      = "outcome unknown: the alerting service tracking it stopped before the gateway's answer or the device's new state; check the device"
)

// expireCommands settles, at now, the commands no alerting service will
// finish, so no dashboard shows them pending for ever and none is sent
// late: a request older than ttl that was not sent (no alerting service
// ran, or the one that claimed it stopped before sending) fails with
// detailRequestExpired; a sent or acknowledged command not updated for
// abandonAfter (its alerting service stopped mid-flight; a running one
// updates it at every try and answer) fails with detailAbandoned. It
// returns how many it failed.
func (m *Manager) expireCommands(ctx context.Context, now time.Time, ttl, abandonAfter time.Duration) (int64, error) {
	nowMS := now.UnixMilli()
	res, err := m.db.ExecContext(ctx, m.db.Rebind(`UPDATE alert_commands SET state = ?, claimed = TRUE, detail = ?, updated_ms = ?
		WHERE state = ? AND updated_ms < ?`), string(CommandFailed), fmt.Sprintf(detailRequestExpired, ttl), nowMS,
		string(CommandRequested), now.Add(-ttl).UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("expire requested commands: %w", err)
	}
	n, _ := res.RowsAffected()
	res, err = m.db.ExecContext(ctx, m.db.Rebind(`UPDATE alert_commands SET state = ?, detail = ?, updated_ms = ?
		WHERE state IN (?, ?) AND updated_ms < ?`), string(CommandFailed), detailAbandoned, nowMS,
		string(CommandSent), string(CommandAcknowledged), now.Add(-abandonAfter).UnixMilli())
	if err != nil {
		return n, fmt.Errorf("expire abandoned commands: %w", err)
	}
	k, _ := res.RowsAffected()
	return n + k, nil
}

// commandSweepEvery is how often a service runs expireCommands.
const commandSweepEvery = 15 * time.Second

// abandonAfter is how long a command this configuration tracks may go
// without an update while its service runs, with a margin: the longest
// wait of a try (for the ack, then for the confirmation) and a tick.
func (c CommandConfig) abandonAfter() time.Duration {
	return 2 * (c.AckTimeout + c.ConfirmTimeout + c.Tick)
}

// sendQueued settles the commands left behind by a stopped service
// (expireCommands, every commandSweepEvery), then claims the commands
// requested by dashboards in other processes within the last TTL and
// sends them (hook in commandLoop).
func (s *Service) sendQueued(ctx context.Context) {
	now := s.cfg.Now()
	cfg := s.cmds.cfg
	s.cmds.mu.Lock()
	sweep := s.cmds.swept.IsZero() || now.Sub(s.cmds.swept) >= commandSweepEvery
	if sweep {
		s.cmds.swept = now
	}
	s.cmds.mu.Unlock()
	if sweep {
		if n, err := s.m.expireCommands(ctx, now, cfg.TTL, cfg.abandonAfter()); err != nil && ctx.Err() == nil {
			s.log.Warn("alerting: expire commands", "err", err)
		} else if n > 0 {
			s.log.Warn("alerting: commands no alerting service will finish marked failed (requests not sent in time, or left behind by a stopped service)", "commands", n)
		}
	}
	qs, err := s.m.claimCommands(ctx, now.Add(-cfg.TTL))
	if err != nil && ctx.Err() == nil {
		s.log.Warn("alerting: claim requested commands", "err", err)
	}
	for _, q := range qs {
		if _, err := s.sendCommand(ctx, q.id, q.site, q.dev, q.action, q.params, q.alertID, q.actor); err != nil && ctx.Err() == nil {
			s.log.Warn("alerting: requested command", "id", q.id, "err", err)
			if errors.Is(err, errBadCommand) {
				st := CommandStatus{ID: q.id, Site: q.site, Device: q.dev, Action: q.action, AlertID: q.alertID, Actor: q.actor,
					State: CommandFailed, Detail: err.Error(), Updated: s.cfg.Now()}
				if err := s.m.putCommandState(ctx, st); err != nil {
					s.log.Warn("alerting: record refused command", "id", q.id, "err", err)
				}
			}
		}
	}
}

// errBadCommand marks a command refused before it was sent.
var errBadCommand = errors.New("command refused")

// recordCommand keeps st in the store for the dashboards (best effort: a
// failure is logged, the command goes on).
func (s *Service) recordCommand(ctx context.Context, st CommandStatus) {
	if err := s.m.putCommandState(ctx, st); err != nil && ctx.Err() == nil {
		s.log.Warn("alerting: record command state", "id", st.ID, "err", err)
	}
}
