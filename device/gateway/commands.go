package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// Actuator carries a command to a device behind the gateway: the
// zigbee2mqtt source (a <friendly_name>/set message) and the Modbus poller
// (a register or coil write) implement it. It returns nil once the device
// (or zigbee2mqtt) took the command, or a *device.CommandError saying why
// it refused or failed; any other error is reported as failed
// (device_error).
type Actuator interface {
	Actuate(ctx context.Context, cmd device.Command) error
}

// maxRecentAcks bounds the acks kept to answer retries of a command.
const maxRecentAcks = 1024

// SetActuator routes the commands for the devices devs to a. Call it before
// Run; a device with no actuator refuses every command but ping
// (unsupported).
func (g *Gateway) SetActuator(a Actuator, devs ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.actuators == nil {
		g.actuators = map[string]Actuator{}
	}
	for _, d := range devs {
		g.actuators[d] = a
	}
}

// command handles one message on a cmd topic: it decodes the command,
// checks that it targets this gateway or a device behind it, has not
// expired and names an action of the device's kind (device.Actions), hands
// it to the device's actuator and publishes the device.CommandAck on the
// target's cmd/ack topic. A command whose id was recently accepted or
// refused is answered again with the same ack and not executed twice; one
// that failed is tried again. A payload that
// cannot be decoded is answered refused (bad_params) when its id can be
// read, else logged and counted as malformed.
func (g *Gateway) command(c paho.Client, topic string, payload []byte) {
	t, err := device.ParseTopic(g.cfg.Root, topic)
	if err != nil {
		g.m.commands.WithLabelValues("malformed").Inc()
		g.log.Warn("command on a malformed topic ignored", "topic", topic, "err", err)
		return
	}
	now := g.now()
	cmd, err := device.DecodeCommand(payload, device.Limits{})
	if err != nil {
		var peek struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(payload, &peek) != nil || peek.ID == "" || len(peek.ID) > 64 {
			g.m.commands.WithLabelValues("malformed").Inc()
			g.log.Warn("malformed command ignored (no id to answer)", "topic", topic, "err", err)
			return
		}
		g.ack(c, t.Device, device.CommandAck{V: device.Version, Device: t.Device, ID: peek.ID, TS: now.UnixMilli(),
			Status: device.AckRefused, Reason: device.ReasonBadParams, Error: err.Error()})
		return
	}
	g.mu.Lock()
	prev, repeat := g.acks[cmd.ID]
	g.mu.Unlock()
	if repeat && prev.Device == t.Device && prev.Status != device.AckFailed {
		g.m.commands.WithLabelValues("repeat").Inc()
		g.publishAck(c, t.Device, prev)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
	defer cancel()
	err = g.execute(ctx, t.Device, *cmd, now)
	a := device.AckFor(*cmd, t.Device, g.now(), err)
	g.log.Info("command", "id", cmd.ID, "device", t.Device, "action", cmd.Action, "status", a.Status, "reason", a.Reason, "error", a.Error)
	g.ack(c, t.Device, a)
}

// execute checks cmd for dev and carries it out.
func (g *Gateway) execute(ctx context.Context, dev string, cmd device.Command, now time.Time) error {
	if cmd.Device != dev {
		return device.Refused(device.ReasonBadParams, "command names device %q but arrived on the topic of %q", cmd.Device, dev)
	}
	var expired error
	if cmd.Expired(now) {
		expired = device.Refused(device.ReasonExpired, "received %s after it expired at %s", now.UTC().Format(time.RFC3339Nano),
			time.UnixMilli(cmd.Expires).UTC().Format(time.RFC3339Nano))
		if cmd.Action != device.ActionCallAcknowledged {
			return expired
		}
	}
	g.mu.Lock()
	var kind device.Kind
	d, known := g.devices[dev]
	if known {
		kind = d.Kind
	} else if dev == g.cfg.ID {
		kind, known = device.Gateway, true
	}
	a := g.actuators[dev]
	g.mu.Unlock()
	if !known {
		return device.Refused(device.ReasonUnknownDevice, "device %s is not behind gateway %s", dev, g.cfg.ID)
	}
	if cmd.Action == device.ActionCallAcknowledged {
		// Call assurance: the gateway's own alarm stops whatever the
		// device can show (localalarm.go). A late one (the uplink was
		// down past its expiry) still says someone acknowledged the call,
		// so it clears the alarms held from before it; only the device's
		// "help is coming" is not shown late.
		g.callAcknowledged(dev, cmd)
		if expired != nil {
			return expired
		}
		if dev == g.cfg.ID {
			return nil
		}
	}
	if !slices.Contains(device.Actions(kind), cmd.Action) {
		return device.Refused(device.ReasonUnsupported, "a %s does not accept %s (accepts %v)", kind, cmd.Action, device.Actions(kind))
	}
	if cmd.Action == device.ActionPing {
		return nil
	}
	if a == nil {
		if cmd.Action == device.ActionCallAcknowledged {
			return device.Refused(device.ReasonUnsupported, "no source of gateway %s can show %s on %s; the gateway's local alarm for it stopped", g.cfg.ID, cmd.Action, dev)
		}
		return device.Refused(device.ReasonUnsupported, "no source of gateway %s can send commands to %s", g.cfg.ID, dev)
	}
	return a.Actuate(ctx, cmd)
}

// ack remembers a and publishes it.
func (g *Gateway) ack(c paho.Client, dev string, a device.CommandAck) {
	g.m.commands.WithLabelValues(string(a.Status)).Inc()
	g.mu.Lock()
	if g.acks == nil {
		g.acks = map[string]device.CommandAck{}
	}
	if _, ok := g.acks[a.ID]; !ok {
		g.ackOrder = append(g.ackOrder, a.ID)
		if len(g.ackOrder) > maxRecentAcks {
			delete(g.acks, g.ackOrder[0])
			g.ackOrder = g.ackOrder[1:]
		}
	}
	g.acks[a.ID] = a
	g.mu.Unlock()
	g.publishAck(c, dev, a)
}

func (g *Gateway) publishAck(c paho.Client, dev string, a device.CommandAck) {
	b, _ := json.Marshal(a)
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
	defer cancel()
	if err := mqttconn.Wait(ctx, c.Publish(g.topic(dev, device.ChanCommandAck), 1, false, b), g.cfg.PublishTimeout, "publish command ack"); err != nil {
		g.log.Warn("command ack not delivered", "id", a.ID, "device", dev, "err", err)
	}
}
