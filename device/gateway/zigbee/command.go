package zigbee

import (
	"context"
	"encoding/json"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// DefaultSirenSeconds is how long a siren_on command sounds a siren when
// the command gives no duration_s.
const DefaultSirenSeconds = 60

// SetPayload returns the JSON object that zigbee2mqtt expects on
// <base>/<friendly_name>/set to carry out cmd on a device of kind k and
// zigbee-herdsman-converters model (may be ""). The keys and values are
// those the converters expose with "set" access (zigbee-herdsman-converters
// 26.112.0, ../shared/data/zigbee2mqtt/fields_safety_kit.json) and those seen
// in real /set messages (real_payloads_safety_kit.jsonl):
//
//   - valve (ZVG1, PF-PM02D-TYZ, ZN231392; any on/off valve): valve_close
//     {"state":"OFF"}, valve_open {"state":"ON"} (RTX ZVG1 log,
//     zigbee2mqtt.io PR #1538);
//   - siren (HS2WD-E): siren_on {"warning":{"mode":"emergency","duration":s,
//     "strobe":true}}, siren_silence {"warning":{"mode":"stop"}} (26.112.0
//     allows only mode stop|emergency; zigbee2mqtt #11615);
//   - smoke_alarm / gas_alarm: alarm_test {"selftest":""} on Xiaomi
//     JTYJ-GD-01LM/BW and JTQJ-BF-01LM/BW, {"selftest":"selftest"} on Aqara
//     JY-GZ-01AQ and JT-BZ-01AQ/A, {"self_test":true} on Tuya
//     TS0601_gas_sensor_2; siren_silence {"buzzer":"mute"} on JY-GZ-01AQ and
//     JT-BZ-01AQ/A, {"silence":true} on TS0601_gas_sensor_2.
//
// Other combinations (a Heiman HS1SA has no writable test) are refused
// with reason unsupported.
func SetPayload(k device.Kind, model string, cmd device.Command) (map[string]any, error) {
	switch {
	case k == device.Valve && cmd.Action == device.ActionValveClose:
		return map[string]any{"state": "OFF"}, nil
	case k == device.Valve && cmd.Action == device.ActionValveOpen:
		return map[string]any{"state": "ON"}, nil
	case k == device.Siren && cmd.Action == device.ActionSirenOn:
		d := float64(DefaultSirenSeconds)
		if v, ok := device.ParamNumber(cmd.Params, "duration_s"); ok {
			d = v
		}
		return map[string]any{"warning": map[string]any{"mode": "emergency", "duration": d, "strobe": true}}, nil
	case k == device.Siren && cmd.Action == device.ActionSirenSilence:
		return map[string]any{"warning": map[string]any{"mode": "stop"}}, nil
	case (k == device.SmokeAlarm || k == device.GasAlarm) && cmd.Action == device.ActionAlarmTest:
		switch model {
		case "JTYJ-GD-01LM/BW", "JTQJ-BF-01LM/BW":
			return map[string]any{"selftest": ""}, nil
		case "JY-GZ-01AQ", "JT-BZ-01AQ/A":
			return map[string]any{"selftest": "selftest"}, nil
		case "TS0601_gas_sensor_2":
			return map[string]any{"self_test": true}, nil
		}
	case (k == device.SmokeAlarm || k == device.GasAlarm) && cmd.Action == device.ActionSirenSilence:
		switch model {
		case "JY-GZ-01AQ", "JT-BZ-01AQ/A":
			return map[string]any{"buzzer": "mute"}, nil
		case "TS0601_gas_sensor_2":
			return map[string]any{"silence": true}, nil
		}
	}
	if model == "" {
		model = "(model not configured)"
	}
	return nil, device.Refused(device.ReasonUnsupported, "zigbee2mqtt has no %s for a %s of model %s", cmd.Action, k, model)
}

// Actuate carries cmd to the zigbee device cmd.Device: it publishes
// SetPayload's JSON on <base>/<friendly_name>/set (QoS 1) on the
// zigbee2mqtt broker and returns nil once the broker acknowledged it.
// zigbee2mqtt then publishes the device's new state on <base>/<friendly_name>,
// which the source maps like any state (valve_open 0 confirms a
// valve_close). Errors are *device.CommandError: refused unknown_device or
// unsupported; failed not_connected (the source is not connected to the
// zigbee2mqtt broker) or timeout (no PUBACK).
func (s *Source) Actuate(ctx context.Context, cmd device.Command) error {
	s.mu.Lock()
	d, ok := s.mapper.byID(cmd.Device)
	c := s.client
	s.mu.Unlock()
	if !ok {
		return device.Refused(device.ReasonUnknownDevice, "no zigbee device %s on this gateway", cmd.Device)
	}
	obj, err := SetPayload(d.Kind, d.Model, cmd)
	if err != nil {
		return err
	}
	if c == nil || !c.IsConnectionOpen() {
		return device.Failed(device.ReasonNotConnected, "not connected to the zigbee2mqtt broker %s", s.cfg.MQTTURL)
	}
	b, _ := json.Marshal(obj)
	topic := s.base + "/" + d.FriendlyName + "/set"
	timeout := s.cfg.PublishTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	if err := mqttconn.Wait(ctx, c.Publish(topic, 1, false, b), timeout, "publish "+topic); err != nil {
		return device.Failed(device.ReasonTimeout, "%v", err)
	}
	s.log.Info("zigbee2mqtt command", "device", d.ID, "topic", topic, "payload", string(b), "command", cmd.ID)
	return nil
}
