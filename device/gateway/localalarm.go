package gateway

// Local alarm state and call assurance (issue 11 item 6). A fall or SOS of
// a device behind the gateway is held as an active local alarm from the
// event until the platform's call_acknowledged command for that device
// arrives (a person acknowledged the alert and is on the way). While active
// it is in every heartbeat (DeviceReport.LocalAlarm) and counted in
// eldercare_gateway_local_alarms_active; when it clears, the gateway says
// so on its local alarm topic, so a station sounder or display stops.
//
// The held alarms are also kept in the spool file (AlarmStore), so a
// restart or power cut of the gateway does not silence a fall nobody has
// acknowledged yet: New restores them.

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// ActiveAlarm is a local alarm the gateway holds for a device.
type ActiveAlarm struct {
	Device string           `json:"device"`
	Type   device.EventType `json:"type"`
	// Since is when the gateway took the event (wall time).
	Since time.Time `json:"since"`
}

// AlarmStore keeps the gateway's held local alarms across restarts;
// *spool.Spool implements it. A Spool without it holds them in memory
// only.
type AlarmStore interface {
	HoldAlarm(ctx context.Context, dev string, typ device.EventType, since time.Time) error
	ClearAlarm(ctx context.Context, dev string) error
	HeldAlarms(ctx context.Context) ([]spool.HeldAlarm, error)
}

// restoreAlarms loads the local alarms held before a restart (New).
func (g *Gateway) restoreAlarms() {
	st, ok := g.spool.(AlarmStore)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	held, err := st.HeldAlarms(ctx)
	if err != nil {
		g.log.Error("local alarms held before the restart could not be read; they are not shown until their device raises again", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range held {
		if g.active == nil {
			g.active = map[string]ActiveAlarm{}
		}
		g.active[a.Device] = ActiveAlarm{Device: a.Device, Type: a.Type, Since: a.Since}
		g.log.Warn("local alarm restored after a restart: still active until the platform acknowledges the call",
			"device", a.Device, "type", a.Type, "since", a.Since)
	}
}

// holdAlarm marks dev's local alarm active (the first event's type and
// time are kept while it stays active) and records it in the AlarmStore;
// the caller signals the uplink.
func (g *Gateway) holdAlarm(dev string, typ device.EventType) {
	g.alarmMu.Lock()
	defer g.alarmMu.Unlock()
	g.mu.Lock()
	if g.active == nil {
		g.active = map[string]ActiveAlarm{}
	}
	a, held := g.active[dev]
	if !held {
		a = ActiveAlarm{Device: dev, Type: typ, Since: g.now()}
		g.active[dev] = a
		g.gwDirty = true // the next status (a heartbeat) reports it at once
		g.log.Warn("local alarm active until the platform acknowledges the call", "device", dev, "type", typ)
	}
	g.mu.Unlock()
	if st, ok := g.spool.(AlarmStore); ok && !held {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := st.HoldAlarm(ctx, dev, a.Type, a.Since); err != nil {
			g.log.Error("local alarm not recorded on disk; a restart before the acknowledgement would lose it", "device", dev, "err", err)
		}
	}
}

// LocalAlarms returns the active local alarms, by device id.
func (g *Gateway) LocalAlarms() []ActiveAlarm {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]ActiveAlarm, 0, len(g.active))
	for _, a := range g.active {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b ActiveAlarm) int {
		switch {
		case a.Device < b.Device:
			return -1
		case a.Device > b.Device:
			return 1
		}
		return 0
	})
	return out
}

// callAcknowledged clears the local alarm of dev (every device's when dev
// is the gateway itself) held since before the command's ts (plus
// CallAckSkew), and announces each cleared alarm on the local alarm topic
// with reason "call_acknowledged". It returns how many it cleared.
func (g *Gateway) callAcknowledged(dev string, cmd device.Command) int {
	g.alarmMu.Lock()
	g.mu.Lock()
	var cleared []ActiveAlarm
	var kept []ActiveAlarm
	for id, a := range g.active {
		if id != dev && dev != g.cfg.ID {
			continue
		}
		if cmd.TS > 0 && a.Since.After(time.UnixMilli(cmd.TS).Add(CallAckSkew)) {
			kept = append(kept, a) // raised after the acknowledgement: a new call
			continue
		}
		cleared = append(cleared, a)
		delete(g.active, id)
	}
	c := g.local
	if len(cleared) > 0 {
		g.gwDirty = true
	}
	g.mu.Unlock()
	if st, ok := g.spool.(AlarmStore); ok {
		for _, a := range cleared {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := st.ClearAlarm(ctx, a.Device); err != nil {
				g.log.Error("local alarm cleared but still recorded on disk; a restart would show it again", "device", a.Device, "err", err)
			}
			cancel()
		}
	}
	g.alarmMu.Unlock()
	if len(cleared) > 0 {
		g.signal()
	}
	for _, a := range kept {
		g.log.Warn("local alarm kept: it was raised after the acknowledgement this call_acknowledged carries",
			"device", a.Device, "type", a.Type, "since", a.Since, "command", cmd.ID, "command_ts", time.UnixMilli(cmd.TS).UTC())
	}
	for _, a := range cleared {
		by, _ := cmd.Params["by"].(string)
		g.log.Info("local alarm cleared: help is coming", "device", a.Device, "type", a.Type, "by", by, "command", cmd.ID,
			"held", g.now().Sub(a.Since).Round(time.Millisecond))
		g.m.alarmsCleared.Inc()
		if c == nil || !c.IsConnectionOpen() {
			continue
		}
		b, _ := json.Marshal(LocalAlarm{V: device.Version, Gateway: g.cfg.ID, Site: g.cfg.Site, Device: a.Device, Type: a.Type,
			TS: g.now().UnixMilli(), Attrs: cmd.Params, Reason: ReasonCallAcknowledged})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := mqttconn.Wait(ctx, c.Publish(g.cfg.LocalAlarmTopic, 1, false, b), time.Second, "publish local alarm cleared"); err != nil {
			g.log.Warn("local alarm clearance not published on the local broker", "device", a.Device, "err", err)
		}
		cancel()
	}
	return len(cleared)
}

// CallAckSkew is how much later than a call_acknowledged command's ts
// (platform time) a local alarm may have been taken (gateway time) and
// still be cleared by it: room for the two clocks to differ. An alarm taken
// later is a new call the command does not acknowledge (a stale or
// redelivered command, one that waited out an uplink outage): it stays.
const CallAckSkew = time.Minute

// ReasonCallAcknowledged is the LocalAlarm reason of a local alarm that
// cleared because the platform acknowledged the call (help is coming).
const ReasonCallAcknowledged = "call_acknowledged"
