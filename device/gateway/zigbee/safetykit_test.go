package zigbee

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// kitLine is one line of real_payloads_safety_kit.jsonl.
type kitLine struct {
	Device    string          `json:"device"`
	Class     string          `json:"class"`
	Source    string          `json:"source"`
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	Direction string          `json:"direction"`
	Note      string          `json:"note"`
}

func kitPayloads(t *testing.T) []kitLine {
	t.Helper()
	p := filepath.Join(testenv.RealData(t), "zigbee2mqtt", "real_payloads_safety_kit.jsonl")
	f, err := os.Open(p)
	if err != nil {
		t.Skipf("real safety-kit payloads not found: %v", err)
	}
	defer f.Close()
	var out []kitLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l kitLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s line %d: %v", p, len(out)+1, err)
		}
		out = append(out, l)
	}
	if len(out) != 43 {
		t.Fatalf("%s: %d lines, want the 43 of README-safety-kit.md", p, len(out))
	}
	return out
}

// TestSafetyKitGolden is one golden case per mapped model: every real
// message of real_payloads_safety_kit.jsonl from that model goes through a
// fresh source (state messages, in file order) and what the source hands
// to the gateway (readings, events with attrs, faults, reports) is compared
// with testdata/safety_kit/<model>.golden. A real /set message is compared
// with the payload the gateway builds for the matching command
// (SetPayload): the same state or warning mode. Refresh with -update.
func TestSafetyKitGolden(t *testing.T) {
	lines := kitPayloads(t)
	f, err := os.Open(filepath.Join("testdata", "safety_kit", "devices.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	devs, err := ParseDevices(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Device{}
	var models []string
	for _, d := range devs {
		byName[d.FriendlyName] = d
		if !strings.Contains(strings.Join(models, "\x00")+"\x00", d.Model+"\x00") {
			models = append(models, d.Model)
		}
	}
	slug := regexp.MustCompile(`[^A-Za-z0-9.-]+`)
	events := map[device.EventType]int{}
	for _, model := range models {
		t.Run(slug.ReplaceAllString(model, "_"), func(t *testing.T) {
			log := &logRec{}
			var got strings.Builder
			srcs := map[string]*Source{} // by base topic
			sink := &recSink{}
			n := 0
			for i, l := range lines {
				base, name, _ := strings.Cut(l.Topic, "/")
				name = strings.TrimSuffix(name, "/set")
				d, ok := byName[name]
				if !ok {
					t.Fatalf("line %d: friendly name %q not in devices.yaml", i+1, name)
				}
				if d.Model != model {
					continue
				}
				n++
				fmt.Fprintf(&got, "line %d (%s, %s): %s\n  %s %s %s\n", i+1, l.Class, l.Source, l.Device, l.Direction, l.Topic, l.Payload)
				if l.Direction == "set" {
					got.WriteString("  " + compareSet(t, d, l.Payload) + "\n")
					continue
				}
				src := srcs[base]
				if src == nil {
					src, err = New(Config{MQTTURL: "tcp://127.0.0.1:1", ClientID: "test", BaseTopic: base, Devices: devs,
						Logger: slog.New(log), Registerer: prometheus.NewRegistry(), Now: func() time.Time { return fixedNow }})
					if err != nil {
						t.Fatal(err)
					}
					srcs[base] = src
				}
				if err := src.Handle(context.Background(), sink, l.Topic, l.Payload); err != nil {
					t.Fatalf("line %d: %v", i+1, err)
				}
				out := append(sink.take(), log.take()...)
				if len(out) == 0 {
					out = []string{"no change (known keys; quiet or repeated values)"}
				}
				for _, o := range out {
					got.WriteString("  -> " + o + "\n")
				}
			}
			sink.mu.Lock()
			for _, e := range sink.events {
				_, typ, _ := strings.Cut(e, ":")
				events[device.EventType(typ)]++
			}
			sink.mu.Unlock()
			if n == 0 {
				t.Fatalf("no real message of model %s", model)
			}
			golden := filepath.Join("testdata", "safety_kit", slug.ReplaceAllString(model, "_")+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got.String() != string(want) {
				t.Errorf("%s differs (run with -update after checking):\n%s", golden, got.String())
			}
		})
	}
	// The safety facts, pinned apart from the golden files: each real
	// alarm in the file raises its event (the HS1CG-E messages say
	// gas:false while alarming, a device bug, so only the Xiaomi gas
	// alarm counts).
	for typ, want := range map[device.EventType]int{
		device.EventSmoke: 2, device.EventGas: 1, device.EventWaterLeak: 4, device.EventSOS: 2,
		device.EventMotion: 4, device.EventContactOpen: 0, device.EventValveClosed: 0,
	} {
		if events[typ] != want {
			t.Errorf("%s events = %d, want %d", typ, events[typ], want)
		}
	}
}

// compareSet checks that the gateway's /set payload for the command that
// a real /set message carried out matches it on the key that acts.
func compareSet(t *testing.T, d Device, real json.RawMessage) string {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(real, &obj); err != nil {
		t.Fatal(err)
	}
	var a device.Action
	var key func(map[string]any) any
	switch {
	case obj["state"] == "OFF":
		a, key = device.ActionValveClose, func(m map[string]any) any { return m["state"] }
	case obj["state"] == "ON":
		a, key = device.ActionValveOpen, func(m map[string]any) any { return m["state"] }
	case obj["warning"] != nil:
		mode := func(m map[string]any) any { w, _ := m["warning"].(map[string]any); return w["mode"] }
		switch mode(obj) {
		case "stop":
			a = device.ActionSirenSilence
		case "emergency":
			a = device.ActionSirenOn
		default:
			return fmt.Sprintf("warning mode %v: not a mode of HS2WD-E in zigbee-herdsman-converters 26.112.0 (stop|emergency); no command builds it", mode(obj))
		}
		key = mode
	default:
		t.Fatalf("real /set %s: no command maps to it", real)
	}
	ours, err := SetPayload(d.Kind, d.Model, device.Command{Action: a})
	if err != nil {
		t.Fatalf("SetPayload(%s, %s, %s): %v", d.Kind, d.Model, a, err)
	}
	b, _ := json.Marshal(ours)
	if fmt.Sprint(key(ours)) != fmt.Sprint(key(obj)) {
		t.Errorf("command %s builds %s, the real /set was %s", a, b, real)
	}
	return fmt.Sprintf("command %s -> gateway publishes %s", a, b)
}
