package mqttconn

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// BenchmarkAck is the cost per QoS 1 message of receiving it and sending
// its PUBACK, through the embedded broker on loopback, with the PUBACKs of
// 100 messages at a time: batched is Acker's own writer on the buffered
// connection (ingest's default), plain is paho's connection and
// Message.Ack per message (ingest --plain puback). The publisher's cost is
// in both. docs/speed.md:
//
//	go test ./internal/mqttconn -run XXX -bench Ack -benchtime 20000x -count 5
func BenchmarkAck(b *testing.B) {
	for _, mode := range []struct {
		name  string
		plain bool
	}{{"batched", false}, {"plain", true}} {
		b.Run(mode.name, func(b *testing.B) {
			url := testenv.EmbeddedBroker(b).URL()
			ctx := context.Background()
			topic := testenv.TopicRoot(b) + "/acks"
			a := &Acker{Plain: mode.plain}
			var (
				mu      sync.Mutex
				pending []Receipt
				got     int
				done    = make(chan struct{})
			)
			h := func(_ paho.Client, m paho.Message) {
				mu.Lock()
				defer mu.Unlock()
				pending = append(pending, a.Receipt(m))
				got++
				if len(pending) == 100 || got == b.N {
					a.Ack(pending)
					pending = pending[:0]
				}
				if got == b.N {
					close(done)
				}
			}
			sub, err := Connect(ctx, Options{URL: url, ClientID: testenv.ClientID(b, "sub"), CleanSession: true, AutoAckDisabled: true,
				OrderMatters: true, DefaultHandler: h, Acker: a, MaxInflight: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Disconnect(100)
			if err := Wait(ctx, sub.Subscribe(topic, 1, nil), 10*time.Second, "subscribe"); err != nil {
				b.Fatal(err)
			}
			pub, err := Connect(ctx, Options{URL: url, ClientID: testenv.ClientID(b, "pub"), CleanSession: true, MaxInflight: 1000})
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Disconnect(100)
			payload := []byte(`{"v":1,"device":"vm-1","boot":1,"id":1,"seq":1,"ts":1,"values":{"hr_bpm":72}}`)
			b.ResetTimer()
			var last paho.Token
			for range b.N {
				last = pub.Publish(topic, 1, false, payload)
			}
			if err := Wait(ctx, last, time.Minute, "publish"); err != nil {
				b.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				b.Fatalf("received %d of %d", got, b.N)
			}
		})
	}
}

// TestAckerPlainUsesPaho: with Plain set, Connect keeps paho's own
// connection (the acker never sees one) and Ack goes through Message.Ack.
func TestAckerPlainUsesPaho(t *testing.T) {
	t.Parallel()
	url := testenv.EmbeddedBroker(t).URL()
	a := &Acker{Plain: true}
	c, err := Connect(context.Background(), Options{URL: url, ClientID: testenv.ClientID(t, "plain"), CleanSession: true,
		AutoAckDisabled: true, Acker: a})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(100)
	if a.cur.Load() != nil {
		t.Fatal("a plain Acker got mqttconn's buffered connection")
	}
	var acked atomic.Int32
	a.Ack([]Receipt{a.Receipt(testMsg{qos: 1, id: 7, acked: &acked})})
	if n := acked.Load(); n != 1 {
		t.Errorf("Message.Ack called %d times, want 1", n)
	}
}
