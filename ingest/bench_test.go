package ingest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// BenchmarkDecode is ingest's work per single-reading message between
// paho and the HTTP write: topic and payload decoding, validation, points,
// dedup, and the point's line protocol. Run:
//
//	go test ./ingest -run XXX -bench Decode -benchmem
func BenchmarkDecode(b *testing.B) {
	for _, mode := range []struct {
		name  string
		plain []string
	}{{"fast", nil}, {"plain", []string{PlainJSON, PlainLineProtocol}}} {
		b.Run(mode.name, func(b *testing.B) {
			s, err := New(Config{MQTTURL: "tcp://127.0.0.1:1", InfluxURL: "http://127.0.0.1:1", InfluxDatabase: "eldercare",
				Root: "bench", ClientID: "bench", Plain: mode.plain}, nil, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			payload, _ := json.Marshal(device.Telemetry{V: 1, Device: "d-00001", Boot: 1, ID: 1, Seq: 1, TS: now.UnixMilli(),
				Values: map[string]float64{"hr_bpm": 72, "spo2_pct": 97}})
			topic := device.Topic{Root: "bench", Site: "bench", Device: "d-00001", Channel: device.ChanTelemetry}.String()
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				it, err := s.decode(benchMsg{topic: topic, payload: payload, id: uint16(i)}, now)
				if err != nil {
					b.Fatal(err)
				}
				buf = append(buf[:0], it.line(0)...)
			}
		})
	}
}

// BenchmarkLineProtocol is the line protocol of one reading's point:
// appendLine (ingest's own encoder) against the line-protocol library's
// Encoder on a write.Point (Config.Plain "line-protocol"). docs/speed.md.
func BenchmarkLineProtocol(b *testing.B) {
	p := &point{name: MeasurementReadings, ms: time.Now().UnixMilli(),
		tags:   []tag{{"device", "vm-101"}, {"kind", "vitals_monitor"}, {"resident", "r-12"}, {"site", "demo-station"}},
		fields: []field{floatField("hr_bpm", 72), floatField("spo2_pct", 97.5), intField(FieldSeq, 1234), intField(FieldBoot, 3)}}
	p.sortFields()
	buf := make([]byte, 0, 512)
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = p.appendLine(buf[:0])
		}
	})
	b.Run("encoder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = p.appendLineEncoder(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type benchMsg struct {
	topic   string
	payload []byte
	id      uint16
}

func (benchMsg) Duplicate() bool     { return false }
func (benchMsg) Qos() byte           { return 1 }
func (benchMsg) Retained() bool      { return false }
func (m benchMsg) Topic() string     { return m.topic }
func (m benchMsg) MessageID() uint16 { return m.id }
func (m benchMsg) Payload() []byte   { return m.payload }
func (benchMsg) Ack()                {}
