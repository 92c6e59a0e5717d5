// Stage 2, rules: operations events of the platform itself. The embedded
// broker signals a client id that keeps being taken over (device.
// EventClientTakeover); alerting raises one operations alert per client id.

package alerting

import (
	"context"
	"fmt"

	"github.com/eldercare-iot/eldercare/device"
)

// TypeClientTakeover is the operations alert (severity warning, no
// resident) of an MQTT client id that keeps being taken over by a new
// connection: two gateways configured with one client id, or one
// credential used in two places, kicking each other off. One alert per
// client id: each further signal (the broker signals once per window while
// it goes on) counts as a repeat on the open alert, without a new
// notification.
const TypeClientTakeover = "client_takeover"

// clientTakeover raises the client_takeover alert of an operations event
// from the broker. The alert's device is the client id (attrs.client_id,
// else the topic's device level), so the dedup key is per client id; its
// site is the topic's (the site of the gateway account that owns the id,
// or device.OpsSite). A redelivered event (device, boot, seq) changes
// nothing. The event does not count as a device report for offline
// supervision.
func (s *Service) clientTakeover(ctx context.Context, t device.Topic, e *device.Event) error {
	s.events.WithLabelValues(string(e.Type)).Inc()
	key := eventKey{device: t.Device, boot: e.Boot, seq: e.Seq}
	if s.recent.seen(key) {
		return nil
	}
	str := func(k string) string { v, _ := e.Attrs[k].(string); return v }
	num := func(k string) float64 { v, _ := e.Attrs[k].(float64); return v }
	client := str("client_id")
	if client == "" {
		client = t.Device
	}
	n := num("takeovers")
	detail := fmt.Sprintf("MQTT client id %s taken over %g times within %g s (user %q; %s, then %s): two devices configured with one client id, or one credential used twice",
		client, n, num("window_s"), str("username"), str("old_remote"), str("new_remote"))
	err := s.raiseFor(ctx, openSpec{Site: t.Site, Device: client, Type: TypeClientTakeover, Severity: SeverityWarning,
		At: e.Time(), Detail: detail, Value: &n, EventKey: key.String()})
	if err != nil {
		return err
	}
	s.recent.add(key)
	return nil
}
