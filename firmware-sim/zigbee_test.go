package firmwaresim_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	firmwaresim "github.com/eldercare-iot/eldercare/firmware-sim"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

func zigbeeFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_from_github_issues.jsonl")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("real zigbee2mqtt payloads not found: %v", err)
	}
	return p
}

func TestLoadZigbeeReplay(t *testing.T) {
	msgs, skipped, err := firmwaresim.LoadZigbeeReplay(zigbeeFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 || skipped == 0 {
		t.Fatalf("messages %d, skipped %d; want both > 0 (the file has Home Assistant and raw lines)", len(msgs), skipped)
	}
	var action bool
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, "zigbee2mqtt/") || strings.HasPrefix(m.Topic, "homeassistant") {
			t.Errorf("line %d: topic %q not relative to the base topic", m.Line, m.Topic)
		}
		if strings.HasSuffix(m.Topic, "/action") {
			action = true
			if strings.HasPrefix(string(m.Payload), "{") || strings.HasPrefix(string(m.Payload), `"`) {
				t.Errorf("line %d: legacy action payload %q should be plain text", m.Line, m.Payload)
			}
		}
	}
	if !action {
		t.Error("no legacy /action message loaded")
	}
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte("{\"topic\":\"zigbee2mqtt/a\",\"payload\":{}}\nnot json\n"), 0o600)
	if _, _, err := firmwaresim.LoadZigbeeReplay(bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("LoadZigbeeReplay(bad) = %v, want an error naming line 2", err)
	}
}

// TestRunZigbee replays the real payloads to the embedded broker and
// receives every one of them, in order, on the chosen base topic.
func TestRunZigbee(t *testing.T) {
	t.Parallel()
	file := zigbeeFile(t)
	url := testenv.EmbeddedBroker(t).URL()
	base := testenv.TopicRoot(t) + "/zigbee2mqtt"
	want, _, err := firmwaresim.LoadZigbeeReplay(file)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(testenv.ClientID(t, "z2m-sub")).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe(base+"/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got = append(got, strings.TrimPrefix(m.Topic(), base+"/")+" "+string(m.Payload()))
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	n, err := firmwaresim.RunZigbee(context.Background(), firmwaresim.ZigbeeConfig{MQTTURL: url, BaseTopic: base, File: file,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("published %d, want %d", n, len(want))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("received %d messages, want %d", len(got), len(want))
	}
	for i, m := range want {
		if w := m.Topic + " " + string(m.Payload); got[i] != w {
			t.Errorf("message %d = %q, want %q", i, got[i], w)
		}
	}
}
