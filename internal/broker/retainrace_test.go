package broker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestRetainedWhileSubscribing: retained messages stored on many topics
// while clients subscribe with wildcards (and so are sent the retained
// messages already there), as zigbee2mqtt's availability messages meet a
// gateway that starts. Run with -race: storing a retained message must not
// race with sending retained messages to a new subscriber. Every
// subscriber gets every topic (as a retained or a live message).
//
// mochi-mqtt v2.7.9 has that race (TopicsIndex.RetainMessage writes a
// particle's retainPath under the particle's lock, TopicsIndex.scanMessages
// reads it without; mochi-mqtt/server#200), which no hook can avoid: under
// -race the test is skipped unless ELDERCARE_MOCHI_RACE=1 asks to
// reproduce it.
func TestRetainedWhileSubscribing(t *testing.T) {
	t.Parallel()
	if raceEnabled && os.Getenv("ELDERCARE_MOCHI_RACE") != "1" {
		t.Skip("mochi-mqtt v2.7.9 races between storing a retained message and sending retained messages to a subscriber (mochi-mqtt/server#200); ELDERCARE_MOCHI_RACE=1 runs it")
	}
	root := testenv.TopicRoot(t)
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: filepath.Join(t.TempDir(), "store.db"), Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const topics, subscribers = 50, 8
	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: testenv.ClientID(t, "pub"), CleanSession: true, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Disconnect(0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := range 3 {
			for i := range topics {
				tok := pub.Publish(fmt.Sprintf("%s/z2m/dev%02d/availability", root, i), 1, true, fmt.Sprintf(`{"state":"online","round":%d}`, round))
				if err := mqttconn.Wait(ctx, tok, 5*time.Second, "publish"); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	// Retained messages set and cleared on more topics at the same time,
	// from the inline client (as the broker's own messages are).
	stop := make(chan struct{})
	var churn sync.WaitGroup
	for g := range 2 {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for i := range 2000 {
				select {
				case <-stop:
					return
				default:
				}
				payload := []byte("online")
				if i%3 == 2 {
					payload = nil // clears it
				}
				_ = b.Server().Publish(fmt.Sprintf("%s/z2m/churn%d-%02d/availability", root, g, i%20), payload, true, 0)
			}
		}()
	}
	defer func() { close(stop); churn.Wait() }()
	got := make([]*collector, subscribers) // by topic
	clients := make([]paho.Client, subscribers)
	for s := range subscribers {
		got[s] = &collector{got: map[string]int{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: b.URL(), ClientID: testenv.ClientID(t, fmt.Sprint("sub", s)), CleanSession: true, Logger: quietLog})
			if err != nil {
				t.Error(err)
				return
			}
			clients[s] = c
			tok := c.Subscribe(root+"/z2m/+/availability", 1, func(_ paho.Client, m paho.Message) {
				got[s].mu.Lock()
				got[s].got[m.Topic()]++
				got[s].mu.Unlock()
			})
			if err := mqttconn.Wait(ctx, tok, 5*time.Second, "subscribe"); err != nil {
				t.Error(err)
			}
			// And again: each SUBSCRIBE sends the retained messages.
			for range 5 {
				if err := mqttconn.Wait(ctx, c.Subscribe(root+"/z2m/#", 0, func(paho.Client, paho.Message) {}), 5*time.Second, "subscribe"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for s, c := range clients {
		if c == nil {
			continue
		}
		defer c.Disconnect(0)
		testenv.EventuallyTrue(t, 10*time.Second, fmt.Sprintf("subscriber %d gets all %d topics", s, topics), func() bool { return got[s].count() >= topics })
	}
}
