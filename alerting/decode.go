// Stage 1, decode and validate: an MQTT message becomes a reading, an event
// or a status of one device, or is rejected (counted, logged, dropped). A
// malformed fall or SOS still raises its alert. The decoded message goes to
// the rules (rulesvc.go, offline.go).

package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
)

// urgentEvent reports whether an MQTT message looks like a fall, SOS, smoke or gas event
// (event channel, "fall", "sos", "smoke" or "gas" in the payload). It only decides the
// processing order; handle still validates everything.
func urgentEvent(topic string, payload []byte) bool {
	if !strings.HasSuffix(topic, "/"+string(device.ChanEvent)) {
		return false
	}
	return bytes.Contains(payload, []byte(`"fall"`)) || bytes.Contains(payload, []byte(`"sos"`)) ||
		bytes.Contains(payload, []byte(`"smoke"`)) || bytes.Contains(payload, []byte(`"gas"`))
}

// handle decodes one message and applies the rules. It never blocks on bad
// input: a malformed message is counted and logged; a malformed fall or SOS
// event still raises its alert (see malformedEvent). It returns nil once
// every decision the message led to is stored (the message may then be
// acknowledged), or the error that kept a decision from the store (only
// when ctx ends: store errors are retried, see durably).
func (s *Service) handle(ctx context.Context, msg paho.Message) error {
	now := s.cfg.Now()
	topic, err := device.ParseTopic(s.cfg.Root, msg.Topic())
	if err != nil {
		s.reject(msg.Topic(), "unknown", err)
		return nil
	}
	switch topic.Channel {
	case device.ChanTelemetry:
		// The fast decoder: DecodeTelemetry's results and errors
		// (FuzzDecodeTelemetryFast), at a quarter of its CPU; in `up`
		// every reading passes here as well as through ingest.
		t, err := device.DecodeTelemetryFast(msg.Payload(), now, s.cfg.Limits)
		if err == nil {
			err = device.CheckTopicDevice(topic, t.Device)
		}
		if err != nil {
			s.reject(msg.Topic(), string(topic.Channel), err)
			return nil
		}
		if err := s.seenTelemetry(ctx, topic, t, now); err != nil {
			return err
		}
		return s.telemetry(ctx, topic, t)
	case device.ChanEvent:
		e, err := device.DecodeEvent(msg.Payload(), now, s.cfg.Limits)
		if err == nil {
			err = device.CheckTopicDevice(topic, e.Device)
		}
		if err != nil {
			s.reject(msg.Topic(), string(topic.Channel), err)
			return s.malformedEvent(ctx, topic, msg.Payload(), err, now)
		}
		if e.Type == device.EventClientTakeover {
			return s.clientTakeover(ctx, topic, e) // the broker's, not a device report
		}
		if err := s.seen(ctx, topic, now); err != nil {
			return err
		}
		// The alert first: listing the device for adoption (unknown.go)
		// is bookkeeping that must not hold up a fall or SOS of an
		// unregistered device (its table may be locked or slow).
		if err := s.event(ctx, topic, e); err != nil {
			return err
		}
		s.noteUnknown(ctx, topic.Site, topic.Device, nil, e.Type)
		return nil
	case device.ChanStatus:
		st, err := device.DecodeStatus(msg.Payload(), s.cfg.Limits)
		if err == nil {
			err = device.CheckTopicDevice(topic, st.Device)
		}
		if err != nil {
			s.reject(msg.Topic(), string(topic.Channel), err)
			return nil
		}
		return s.status(ctx, topic, st, msg.Retained(), now)
	case device.ChanCommandAck:
		return s.commandAck(ctx, topic, msg.Payload())
	default:
		// Not subscribed; a persistent-session route may still see it.
		return nil
	}
}

func (s *Service) reject(topic, channel string, err error) {
	reason := device.Reason(err)
	s.rejected.WithLabelValues(channel, reason).Inc()
	s.log.Warn("alerting: message rejected", "topic", topic, "channel", channel, "reason", reason, "err", err)
}

// Reasons of refused messages (label reason of
// eldercare_alerting_rejected_total) found by the rules rather than by the
// decoder.
const (
	// ReasonCardOtherSite: a meal event whose card belongs to a resident of
	// another site than the topic's.
	ReasonCardOtherSite = "card_other_site"
)

// refuseLogEvery is the shortest time between two log lines of one refusal
// (device and reason).
const refuseLogEvery = time.Minute

// refuse counts a well-formed message that its sender may not send (a
// gateway speaking for another site's residents or devices) in
// eldercare_alerting_rejected_total{channel, reason} and logs it at most
// once a minute per device and reason. Nothing is opened for it.
func (s *Service) refuse(t device.Topic, ch device.Channel, reason, detail string) {
	s.rejected.WithLabelValues(string(ch), reason).Inc()
	key := t.Device + "\x00" + reason
	now := s.cfg.Now()
	s.mu.Lock()
	last, seen := s.refusedLog[key]
	logNow := !seen || now.Sub(last) >= refuseLogEvery
	if logNow {
		s.refusedLog[key] = now
	}
	s.mu.Unlock()
	if logNow {
		s.log.Warn("alerting: message refused (further ones from this device for this reason are counted, logged once a minute)",
			"site", t.Site, "device", t.Device, "channel", ch, "reason", reason, "detail", detail)
	}
}

// malformedEvent raises the alert of a fall or SOS event that failed
// validation (a timestamp in seconds, zero, missing or far ahead, an unknown
// field, a null attribute, a device field that is not the topic's ...):
// alerting never ignores a safety event. The payload is parsed leniently;
// when it is a JSON object whose "type" is "fall" or "sos", the alert is
// raised for the topic's device, stamped at the receive time, with a detail
// that names the validation error so the fault is visible to staff. A
// redelivery (same boot and seq, when the payload has them) raises nothing.
// safetyTypeRe finds a fall or SOS type in a payload that is not JSON.
var safetyTypeRe = regexp.MustCompile(`"type"\s*:\s*"(fall|sos)"`)

func (s *Service) malformedEvent(ctx context.Context, t device.Topic, payload []byte, verr error, now time.Time) error {
	maxPayload := s.cfg.Limits.MaxPayload
	if maxPayload <= 0 {
		maxPayload = device.DefaultLimits.MaxPayload
	}
	if len(payload) > maxPayload {
		payload = payload[:maxPayload] // still look for the type in what fits
	}
	var raw map[string]json.RawMessage
	var typ device.EventType
	if json.Unmarshal(payload, &raw) == nil {
		if json.Unmarshal(raw["type"], &typ) != nil {
			return nil
		}
	} else if m := safetyTypeRe.FindSubmatch(payload); m != nil {
		// Not JSON at all (a bare NaN from a firmware printf, data after
		// the object, a cut-off or oversized payload) but it names a fall
		// or an SOS: raise it without an event key (a redelivery may then
		// page again; a duplicate page beats a missed fall).
		typ, raw = device.EventType(m[1]), nil
	} else {
		return nil
	}
	var alertType, detail string
	switch typ {
	case device.EventFall:
		alertType, detail = TypeFall, "fall detected"
	case device.EventSOS:
		alertType, detail = TypeSOS, "SOS button pressed"
	default:
		return nil
	}
	s.events.WithLabelValues(string(typ)).Inc()
	var key *eventKey
	var boot uint32
	var seq uint64
	if json.Unmarshal(raw["boot"], &boot) == nil && json.Unmarshal(raw["seq"], &seq) == nil && seq > 0 {
		key = &eventKey{device: t.Device, boot: boot, seq: seq}
		if s.recent.seen(*key) {
			return nil
		}
	}
	msg := strings.ReplaceAll(verr.Error(), "\n", "; ")
	detail += " (from a malformed event, stamped at receive time: " + truncate(msg, 300) + ")"
	s.log.Error("alerting: malformed safety event raises its alert anyway", "device", t.Device, "type", typ, "err", verr)
	spec := openSpec{Site: t.Site, Device: t.Device, Type: alertType, Severity: SeverityCritical, At: now,
		Detail: detail, NotifyRepeat: true}
	if key != nil {
		spec.EventKey = key.String()
	}
	if err := s.raise(ctx, spec); err != nil {
		return err
	}
	if key != nil {
		s.recent.add(*key)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
