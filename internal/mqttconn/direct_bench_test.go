package mqttconn

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// fakeBroker accepts one MQTT connection on loopback, answers CONNECT with
// CONNACK, then writes stream (pre-encoded PUBLISH packets) as fast as the
// client reads it, and discards what the client sends (PUBACKs).
func fakeBroker(b *testing.B, stream []byte) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := packets.ReadPacket(c); err != nil { // CONNECT
			return
		}
		ack := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
		ack.SessionPresent = true
		if ack.Write(c) != nil {
			return
		}
		go func() {
			_, _ = c.Read(make([]byte, 1<<20))
			for {
				if _, err := c.Read(make([]byte, 1<<16)); err != nil {
					return
				}
			}
		}()
		_, _ = c.Write(stream)
		time.Sleep(time.Minute) // until the client disconnects
	}()
	return "tcp://" + ln.Addr().String()
}

// BenchmarkReceive is the client's cost of receiving one QoS 1 message of
// ingest's size and handing it to the handler, with the message read
// directly from the buffered connection (Options.Direct) against paho's
// reader, goroutines and router (Acker.PlainReceive: ingest --plain
// receive). The broker is a fake on loopback that only writes pre-encoded
// packets, so the figures are the client's own. docs/speed.md.
//
//	go test ./internal/mqttconn -run XXX -bench Receive -benchmem
func BenchmarkReceive(b *testing.B) {
	for _, mode := range []string{"direct", "paho"} {
		b.Run(mode, func(b *testing.B) {
			var stream bytes.Buffer
			payload := []byte(`{"v":1,"device":"d-00001","boot":1,"id":1,"seq":1,"ts":1765000000000,"values":{"hr_bpm":72,"spo2_pct":97}}`)
			for i := range b.N {
				p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
				p.TopicName = fmt.Sprintf("eldercare/s1/d-%05d/telemetry", i%10000)
				p.Qos, p.MessageID, p.Payload = 1, uint16(i%65535+1), payload
				_ = p.Write(&stream)
			}
			url := fakeBroker(b, stream.Bytes())
			var got atomic.Int64
			done := make(chan struct{})
			h := func(m paho.Message) {
				if len(m.Payload()) != len(payload) {
					b.Errorf("payload of %d bytes", len(m.Payload()))
				}
				if got.Add(1) == int64(b.N) {
					close(done)
				}
			}
			a := &Acker{PlainReceive: mode == "paho"}
			b.ReportAllocs()
			b.ResetTimer()
			c, err := Connect(context.Background(), Options{URL: url, ClientID: "bench", AutoAckDisabled: true, OrderMatters: true,
				Acker: a, MaxInflight: 10000, Direct: h, DefaultHandler: func(_ paho.Client, m paho.Message) { h(m) }})
			if err != nil {
				b.Fatal(err)
			}
			<-done
			b.StopTimer()
			c.Disconnect(0)
		})
	}
}
