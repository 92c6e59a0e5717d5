package broker_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// connectPacket is an MQTT 3.1.1 CONNECT (clean session, keepalive 60 s)
// for clientID.
func connectPacket(clientID string) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, byte(len(clientID) >> 8), byte(len(clientID))}
	body = append(body, clientID...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// TestCloseDuringConnectStorm: Close while 20 goroutines keep opening
// connections (accepted CONNECTs, two goroutines sharing each client id so
// sessions are taken over, CONNECTs refused for an unsupported protocol
// level, and connections that send a PUBLISH first and are dropped)
// returns nil promptly and, under -race, without the data race between
// mochi's Server.Close (ClientsWg.Wait) and a connection still being
// established (ClientsWg.Add in its goroutine) that failed
// TestRehashOnConnect in CI.
func TestCloseDuringConnectStorm(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		addr := b.URL()[len("tcp://"):]
		var (
			wg       sync.WaitGroup
			acked    atomic.Int64
			attempts atomic.Int64
			stop     = make(chan struct{})
		)
		for g := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						return // the broker has stopped listening
					}
					attempts.Add(1)
					var pk []byte
					switch g % 4 {
					case 0, 1: // g and g+1 share client ids: takeovers
						pk = connectPacket(fmt.Sprintf("storm-%d-%d", g/2, i))
					case 2: // protocol level 9: refused (CONNACK 0x01 then closed)
						pk = connectPacket(fmt.Sprintf("storm-bad-%d-%d", g, i))
						pk[8] = 9
					default: // a PUBLISH first: a protocol violation, dropped
						pk = []byte{0x30, 0x05, 0, 1, 'a', 'h', 'i'}
					}
					c.SetDeadline(time.Now().Add(2 * time.Second))
					if _, err := c.Write(pk); err == nil && g%4 < 2 {
						ack := make([]byte, 4)
						if _, err := io.ReadFull(c, ack); err == nil && ack[0] == 0x20 && ack[3] == 0 {
							acked.Add(1)
						}
					}
					c.Close()
				}
			}()
		}
		// Let the storm reach the broker, then close in the middle of it.
		testenv.EventuallyTrue(t, 10*time.Second, "the storm's first accepted CONNECTs", func() bool { return acked.Load() >= 20 })
		start := time.Now()
		err = b.Close()
		took := time.Since(start)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Errorf("round %d: Close = %v", round, err)
		}
		if took > 5*time.Second {
			t.Errorf("round %d: Close took %s during the storm", round, took)
		}
		if acked.Load() == 0 {
			t.Errorf("round %d: no CONNECT was accepted in %d attempts; the storm did not reach the broker", round, attempts.Load())
		}
		t.Logf("round %d: %d connections, %d accepted CONNECTs, Close took %s", round, attempts.Load(), acked.Load(), took)
	}
}
