// Stage 4, notify: call assurance. When a fall or SOS alert is acknowledged, the originating device (or
// the gateway it is behind) is told that help is coming, so the resident's call station can show the
// call was received (UL 2560 asks for this "call assured" indication).

package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// ActionCallAcknowledged is the command action of call assurance: the call
// was acknowledged by a person who is on the way. A call station lights its
// "help is coming" indicator; the gateway stops its local alarm for the
// device. See docs/protocol.md, "Call assurance".
const ActionCallAcknowledged = string(device.ActionCallAcknowledged)

// CallAssuranceTTL is how long a call-assurance command stays valid.
const CallAssuranceTTL = 10 * time.Minute

// AssuranceCommand is the call-assurance payload on
// {root}/v1/{site}/{device}/cmd (QoS 1, not retained): the shape of a
// protocol v1 command (device.Command on main) with action
// "call_acknowledged" and params alert (the alert id), type (fall or sos)
// and by (who acknowledged).
//
//	{"v":1,"id":"assure-7","ts":1764400000000,"device":"sos-1","action":"call_acknowledged",
//	 "params":{"alert":7,"type":"sos","by":"nurse"},"expires":1764400600000}
type AssuranceCommand struct {
	V       int            `json:"v"`
	ID      string         `json:"id"`
	TS      int64          `json:"ts"`
	Device  string         `json:"device"`
	Action  string         `json:"action"`
	Params  map[string]any `json:"params"`
	Expires int64          `json:"expires"`
}

// callAssurance is the outbox receiver ("call_assurance") that publishes
// the command for every "acknowledged" notification of a fall or SOS
// alert, and for its "resolved" one when it was resolved without being
// acknowledged first; it skips everything else. The command id is fixed per alert, so a
// redelivery is recognisable.
type callAssurance struct {
	client paho.Client
	root   string
	now    func() time.Time
}

func (r *callAssurance) Name() string { return "call_assurance" }

func (r *callAssurance) Send(ctx context.Context, n Notification) error {
	if n.Event != EventAcknowledged && n.Event != EventResolved {
		return ErrSkipped
	}
	var c Change
	if err := json.Unmarshal(n.Body, &c); err != nil {
		return Permanent(fmt.Errorf("decode notification: %w", err))
	}
	a := c.Alert
	if a.Type != TypeFall && a.Type != TypeSOS {
		return ErrSkipped
	}
	by := a.AcknowledgedBy
	if n.Event == EventResolved {
		// Resolved without an acknowledgement (straight from open: the
		// nurse was there, or a false alarm): the call was answered all
		// the same, and without this the gateway would hold its local
		// alarm for ever. After an acknowledgement it was sent already.
		if a.AcknowledgedAt != nil {
			return ErrSkipped
		}
		by = a.ResolvedBy
	}
	topic := device.Topic{Root: r.root, Site: a.Site, Device: a.Device, Channel: device.ChanCommand}
	if err := topic.Validate(); err != nil {
		return Permanent(fmt.Errorf("call assurance topic: %w", err))
	}
	now := time.Now
	if r.now != nil {
		now = r.now
	}
	ts := now()
	cmd := AssuranceCommand{V: device.Version, ID: "assure-" + strconv.FormatInt(a.ID, 10), TS: ts.UnixMilli(), Device: a.Device,
		Action: ActionCallAcknowledged, Params: map[string]any{"alert": a.ID, "type": a.Type, "by": by},
		Expires: ts.Add(CallAssuranceTTL).UnixMilli()}
	b, err := json.Marshal(cmd)
	if err != nil {
		return Permanent(err)
	}
	return mqttconn.Wait(ctx, r.client.Publish(topic.String(), 1, false, b), 10*time.Second, "publish call assurance")
}
