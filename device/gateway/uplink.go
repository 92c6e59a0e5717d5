package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// peekEntries is how many spooled entries one drain round reads.
const peekEntries = 5000

// reconnectSettle is how long the drain waits after a reconnect before it
// publishes, so that onConnect's status messages go first. paho itself
// resends nothing after a reconnect (the uplink uses mqttconn.NoStore; in
// paho v1.5.1 that resend marks packets DUP without a lock and raced with
// new publishes): the drain resends every spooled entry not yet
// acknowledged.
const reconnectSettle = 300 * time.Millisecond

// message is one PUBLISH the uplink sends for spooled entries.
type message struct {
	topic   string
	payload []byte
	pos     []int64
	kind    spool.Kind
}

// packetOverhead is the size of a QoS 1 PUBLISH packet beyond its topic and
// payload: fixed header (1 byte + up to 4 of remaining length), topic length
// (2) and packet id (2). MQTT 3.1.1 section 3.3.
const packetOverhead = 1 + 4 + 2 + 2

// payloadBudget is the largest payload for a message of dev on ch: within
// MaxMessageBytes for the whole packet and within the protocol's 256 KiB.
func (g *Gateway) payloadBudget(dev string, ch device.Channel) int {
	return min(g.cfg.MaxMessageBytes-packetOverhead-len(g.topic(dev, ch)), device.DefaultLimits.MaxPayload)
}

// batch turns spooled entries (oldest first) into messages, in order:
// consecutive readings of one device and boot become one telemetry batch
// (protocol v1 batch form, at most 5,000 readings and within the payload
// budget); each event is one message. A batch carries the message id of its
// newest reading: a replay after a crash may group readings differently, so
// readings are deduplicated by (device, boot, seq), never by message id.
func (g *Gateway) batch(entries []spool.Entry) ([]message, error) {
	var out []message
	for i := 0; i < len(entries); {
		e := entries[i]
		if e.Kind == spool.KindEvent {
			b, err := json.Marshal(device.Event{V: device.Version, Device: e.Device, Boot: e.Boot, ID: e.ID, Seq: e.Seq,
				TS: e.TS, Type: e.Type, Attrs: e.Attrs})
			if err != nil {
				return out, fmt.Errorf("encode event %s boot %d seq %d: %w", e.Device, e.Boot, e.Seq, err)
			}
			out = append(out, message{topic: g.topic(e.Device, device.ChanEvent), payload: b, pos: []int64{e.Pos}, kind: spool.KindEvent})
			i++
			continue
		}
		budget := g.payloadBudget(e.Device, device.ChanTelemetry)
		var items [][]byte
		var pos []int64
		size := 0
		var last spool.Entry
		for ; i < len(entries); i++ {
			r := entries[i]
			if r.Kind != spool.KindReading || r.Device != e.Device || r.Boot != e.Boot || len(items) == protocolMaxBatch {
				break
			}
			b, err := json.Marshal(device.Reading{Seq: r.Seq, TS: r.TS, Values: r.Values})
			if err != nil {
				return out, fmt.Errorf("encode reading %s boot %d seq %d: %w", r.Device, r.Boot, r.Seq, err)
			}
			// Header with the largest id this batch could carry, plus commas.
			head := len(batchHeader(r.Device, r.Boot, r.ID)) + 2
			if len(items) > 0 && head+size+len(items)+len(b) > budget {
				break
			}
			items = append(items, b)
			pos = append(pos, r.Pos)
			size += len(b)
			last = r
		}
		payload := batchHeader(last.Device, last.Boot, last.ID)
		for j, it := range items {
			if j > 0 {
				payload = append(payload, ',')
			}
			payload = append(payload, it...)
		}
		payload = append(payload, "]}"...)
		out = append(out, message{topic: g.topic(e.Device, device.ChanTelemetry), payload: payload, pos: pos, kind: spool.KindReading})
	}
	return out, nil
}

func batchHeader(dev string, boot uint32, id uint64) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"v":1,"device":`...)
	b = strconv.AppendQuote(b, dev)
	b = append(b, `,"boot":`...)
	b = strconv.AppendUint(b, uint64(boot), 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"readings":[`...)
	return b
}

// drain publishes statuses and the spool while the uplink is connected.
func (g *Gateway) drain(ctx context.Context) error {
	idle := time.NewTicker(250 * time.Millisecond)
	defer idle.Stop()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-g.wake:
		case <-idle.C:
		}
		return true
	}
	var lastGen uint64
	sawDown := true
	for ctx.Err() == nil {
		c := g.client()
		if c == nil {
			sawDown = true
			if !wait() {
				break
			}
			continue
		}
		g.mu.Lock()
		gen, at := g.connGen, g.connAt
		g.mu.Unlock()
		if sawDown && gen == lastGen {
			// Connected again, but onConnect has not run yet.
			if !wait() {
				break
			}
			continue
		}
		if d := reconnectSettle - time.Since(at); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
			continue
		}
		lastGen, sawDown = gen, false
		if err := g.publishStatuses(ctx, c); err != nil {
			g.m.pubErrors.Inc()
			g.log.Warn("status publish failed; retrying", "err", err)
			sawDown = !c.IsConnectionOpen()
			if !wait() {
				break
			}
			continue
		}
		entries, err := g.spool.Peek(ctx, peekEntries)
		if err != nil && len(entries) == 0 {
			if ctx.Err() != nil {
				break
			}
			g.log.Error("cannot read the spool", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		if len(entries) == 0 {
			if !wait() {
				break
			}
			continue
		}
		msgs, err := g.batch(entries)
		if err != nil {
			g.log.Error("cannot encode spooled entries", "err", err)
		}
		if n, perr := g.publish(ctx, c, msgs); perr != nil {
			if ctx.Err() != nil {
				break
			}
			g.m.pubErrors.Inc()
			g.log.Warn("uplink publish failed; entries stay spooled and are sent again", "published_messages", n, "err", perr)
			sawDown = !c.IsConnectionOpen()
			if !wait() {
				break
			}
		}
	}
	return nil
}

// publish sends msgs in order with up to InFlight awaiting their PUBACK,
// deleting each message's entries from the spool after its PUBACK. It
// stops at the first failure and returns how many messages were
// acknowledged.
func (g *Gateway) publish(ctx context.Context, c paho.Client, msgs []message) (int, error) {
	type sent struct {
		m   message
		tok paho.Token
	}
	var window []sent
	done := 0
	settle := func() error {
		s := window[0]
		window = window[1:]
		if err := mqttconn.Wait(ctx, s.tok, g.cfg.PublishTimeout, "publish "+s.m.topic); err != nil {
			return err
		}
		if err := g.spool.Delete(ctx, s.m.pos...); err != nil {
			return fmt.Errorf("after PUBACK: %w", err)
		}
		done++
		g.m.published.WithLabelValues(s.m.kind.String()).Add(float64(len(s.m.pos)))
		if s.m.kind == spool.KindEvent {
			g.mu.Lock()
			for _, p := range s.m.pos {
				if a := g.alarms[p]; a != nil {
					a.timer.Stop()
					delete(g.alarms, p)
				}
			}
			g.mu.Unlock()
		}
		return nil
	}
	for _, m := range msgs {
		if len(window) >= g.cfg.InFlight {
			if err := settle(); err != nil {
				return done, err
			}
		}
		if !c.IsConnectionOpen() {
			return done, fmt.Errorf("publish %s: uplink not connected", m.topic)
		}
		window = append(window, sent{m, c.Publish(m.topic, 1, false, m.payload)})
	}
	for len(window) > 0 {
		if err := settle(); err != nil {
			return done, err
		}
	}
	return done, nil
}

// publishStatuses publishes the gateway's own status (online, with its
// devices and their report: boot after a connect, then a heartbeat every
// HeartbeatInterval) and every changed device status, retained, QoS 1.
func (g *Gateway) publishStatuses(ctx context.Context, c paho.Client) error {
	type pub struct {
		dev     string
		payload []byte
		at      time.Time
	}
	var pubs []pub
	g.mu.Lock()
	if g.gwDirty {
		// The first status on a connection says boot; later ones are
		// heartbeats. Both list the devices and report what is known of
		// each, so the platform never takes a quiet device for a lost one.
		now := g.now()
		devs := append([]string(nil), g.order...)
		reason := device.ReasonHeartbeat
		if !g.booted {
			reason = device.ReasonBoot
		}
		pubs = append(pubs, pub{dev: g.cfg.ID, payload: g.statusPayload(device.Status{Device: g.cfg.ID, TS: now.UnixMilli(),
			State: device.Online, Reason: reason, Kind: device.Gateway, Devices: devs,
			HeartbeatMS: g.cfg.HeartbeatInterval.Milliseconds(), Report: g.report(now)})})
	}
	for _, id := range g.order {
		d := g.devices[id]
		if !d.dirty {
			continue
		}
		st := device.Status{Device: id, TS: d.at.UnixMilli(), State: d.state, Kind: d.Kind, Gateway: g.cfg.ID, Reason: device.ReasonBoot}
		if d.state == device.Offline {
			st.Reason, st.Kind = device.ReasonNoReadings, ""
		}
		pubs = append(pubs, pub{dev: id, payload: g.statusPayload(st), at: d.at})
	}
	g.mu.Unlock()
	for _, p := range pubs {
		topic := g.topic(p.dev, device.ChanStatus)
		if err := mqttconn.Wait(ctx, c.Publish(topic, 1, true, p.payload), g.cfg.PublishTimeout, "publish status "+topic); err != nil {
			return err
		}
		g.mu.Lock()
		if p.dev == g.cfg.ID {
			g.gwDirty, g.booted = false, true
		} else if d := g.devices[p.dev]; d != nil && d.at.Equal(p.at) {
			d.dirty = false // unless it changed again meanwhile
		}
		g.mu.Unlock()
	}
	return nil
}
