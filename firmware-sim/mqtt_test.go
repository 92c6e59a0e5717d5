package firmwaresim

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"gopkg.in/yaml.v3"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// msg is one message received by the test subscriber, with its arrival time.
type msg struct {
	topic    string
	payload  []byte
	retained bool
	at       time.Time
}

// inbox subscribes to root/# on url and collects messages.
type inbox struct {
	mu   sync.Mutex
	msgs []msg
}

func subscribe(t *testing.T, url, root string) *inbox {
	t.Helper()
	in := &inbox{}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(testenv.ClientID(t, "sub")).SetCleanSession(true).SetOrderMatters(true) // in arrival order: tests check the order of statuses
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(root+"/#", 1, func(_ paho.Client, m paho.Message) {
		in.mu.Lock()
		in.msgs = append(in.msgs, msg{m.Topic(), m.Payload(), m.Retained(), time.Now()})
		in.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return in
}

func (in *inbox) on(ch device.Channel) []msg {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []msg
	for _, m := range in.msgs {
		if strings.HasSuffix(m.topic, "/"+string(ch)) {
			out = append(out, m)
		}
	}
	return out
}

// waitLimit bounds every wait for a message in this package's tests.
const waitLimit = 15 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestVitalsReplayBIDMC01(t *testing.T) {
	t.Parallel()
	data := testenv.RealData(t)
	file := filepath.Join(data, "vitals-bidmc", "bidmc_01_Numerics.csv")
	rows, err := ReadBIDMCFile(file)
	if err != nil {
		t.Fatal(err)
	}
	withValues := 0
	for _, r := range rows {
		if r.Values() != nil {
			withValues++
		}
	}
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	in := subscribe(t, url, root)
	cfg := VitalsConfig{DeviceConfig: DeviceConfig{MQTTURL: url, Root: root, Site: "s1", Device: "vm-1", Boot: 7, Logger: quietLogger()}, File: file, Speed: 100}
	if err := RunVitals(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	// The shutdown status is published after the last reading, on the same
	// connection: once it is in, every reading (and any duplicate) is.
	testenv.EventuallyTrue(t, waitLimit, "the shutdown status", func() bool { return len(in.on(device.ChanStatus)) >= 2 })
	got := in.on(device.ChanTelemetry)
	if len(got) != withValues {
		t.Fatalf("received %d readings, want %d (rows with values)", len(got), withValues)
	}
	// The subscriber's handlers run concurrently: order by message id.
	tels := make([]*device.Telemetry, len(got))
	for i, m := range got {
		tel, err := device.DecodeTelemetry(m.payload, m.at, device.Limits{})
		if err != nil {
			t.Fatalf("reading %d rejected: %v\n%s", i, err, m.payload)
		}
		tels[i] = tel
	}
	idx := make([]int, len(got))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return tels[idx[a]].ID < tels[idx[b]].ID })
	sortedMsgs, sortedTels := make([]msg, len(got)), make([]*device.Telemetry, len(got))
	for i, k := range idx {
		sortedMsgs[i], sortedTels[i] = got[k], tels[k]
	}
	got, tels = sortedMsgs, sortedTels
	var lastID, lastSeq uint64
	var lastTS int64
	for i, m := range got {
		tel := tels[i]
		r := tel.Readings[0]
		if r.TS > m.at.UnixMilli() || r.TS > end.UnixMilli() {
			t.Fatalf("reading %d stamped %d, in the future of its arrival %d", i, r.TS, m.at.UnixMilli())
		}
		if tel.Device != "vm-1" || tel.Boot != 7 {
			t.Fatalf("reading %d: device %q boot %d", i, tel.Device, tel.Boot)
		}
		if i == 0 && (tel.ID != 1 || r.Seq != 1) {
			t.Fatalf("first message id %d seq %d, want 1 and 1", tel.ID, r.Seq)
		}
		if i > 0 && (tel.ID <= lastID || r.Seq <= lastSeq || r.TS <= lastTS) {
			t.Fatalf("reading %d: id %d seq %d ts %d do not increase", i, tel.ID, r.Seq, r.TS)
		}
		lastID, lastSeq, lastTS = tel.ID, r.Seq, r.TS
	}
	if span := time.Duration(lastTS-tels[0].Readings[0].TS) * time.Millisecond; span != rows[len(rows)-1].T-rows[0].T {
		t.Errorf("device-time span %s, want the recording's %s", span, rows[len(rows)-1].T-rows[0].T)
	}
}

func decodeStatuses(t *testing.T, ms []msg) []*device.Status {
	t.Helper()
	var out []*device.Status
	for _, m := range ms {
		s, err := device.DecodeStatus(m.payload, device.Limits{})
		if err != nil {
			t.Fatalf("status rejected: %v\n%s", err, m.payload)
		}
		out = append(out, s)
	}
	return out
}

func TestOnEnd(t *testing.T) {
	url := testenv.Mosquitto(t) // last will and retained status, as Mosquitto keeps them
	tests := []struct {
		mode   OnEnd
		reason string
	}{
		{EndClean, device.ReasonShutdown},
		{EndDrop, device.ReasonLastWill},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode), func(t *testing.T) {
			root := testenv.TopicRoot(t)
			in := subscribe(t, url, root)
			cfg := SOSConfig{DeviceConfig: DeviceConfig{MQTTURL: url, Root: root, Site: "s1", Device: "sos-1", OnEnd: tc.mode, Logger: quietLogger()}, Presses: 1}
			if err := RunSOS(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			testenv.EventuallyTrue(t, waitLimit, "the final status", func() bool { return len(in.on(device.ChanStatus)) >= 2 })
			st := decodeStatuses(t, in.on(device.ChanStatus))
			if st[0].State != device.Online || st[0].Reason != device.ReasonBoot || st[0].Kind != device.SOSButton {
				t.Fatalf("first status %+v, want online/boot/sos_button", st[0])
			}
			last := st[len(st)-1]
			if last.State != device.Offline || last.Reason != tc.reason {
				t.Fatalf("last status %+v, want offline/%s", last, tc.reason)
			}
			if n := len(in.on(device.ChanEvent)); n != 1 {
				t.Fatalf("%d sos events, want 1", n)
			}
			// The final status is retained: a new subscriber gets it.
			late := subscribe(t, url, root)
			testenv.EventuallyTrue(t, waitLimit, "the retained status", func() bool { return len(late.on(device.ChanStatus)) >= 1 })
			m := late.on(device.ChanStatus)[0]
			s := decodeStatuses(t, []msg{m})[0]
			if !m.retained || s.Reason != tc.reason {
				t.Fatalf("retained status %+v (retained %v), want offline/%s", s, m.retained, tc.reason)
			}
			clearRetained(t, url, m.topic)
		})
	}
}

func clearRetained(t *testing.T, url, topic string) {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(testenv.ClientID(t, "clr")))
	if tok := c.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		c.Publish(topic, 1, true, []byte{}).WaitTimeout(5 * time.Second)
		c.Disconnect(100)
	}
}

func TestOnEndSilentKeepsConnection(t *testing.T) {
	url := testenv.Mosquitto(t) // last will and retained status, as Mosquitto keeps them
	root := testenv.TopicRoot(t)
	in := subscribe(t, url, root)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- RunSOS(ctx, SOSConfig{DeviceConfig: DeviceConfig{MQTTURL: url, Root: root, Site: "s1", Device: "sos-2", OnEnd: EndSilent, Logger: quietLogger()}})
	}()
	testenv.EventuallyTrue(t, waitLimit, "the sos event", func() bool { return len(in.on(device.ChanEvent)) == 1 })
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("silent end returned before it was stopped: %v", err)
	default:
	}
	if n := len(in.on(device.ChanStatus)); n != 1 {
		for _, m := range in.on(device.ChanStatus) {
			t.Logf("status %s retained=%v at %s: %s", m.topic, m.retained, m.at.Format(time.RFC3339Nano), m.payload)
		}
		t.Fatalf("%d statuses while silent, want only the online one", n)
	}
	cancel() // the process is killed: the broker publishes the last will
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, waitLimit, "the last will", func() bool { return len(in.on(device.ChanStatus)) >= 2 })
	st := decodeStatuses(t, in.on(device.ChanStatus))
	if st[1].Reason != device.ReasonLastWill {
		t.Fatalf("status after kill %+v, want offline/last_will", st[1])
	}
	clearRetained(t, url, in.on(device.ChanStatus)[0].topic)
}

func TestFallReplayWEDA(t *testing.T) {
	t.Parallel()
	data := testenv.RealData(t)
	url := testenv.EmbeddedBroker(t).URL()
	tests := []struct {
		trial string
		falls int
	}{
		{"F01/U01_R01", 1}, {"F02/U02_R01", 1}, {"F03/U03_R01", 1},
		{"D01/U21_R01", 0}, {"D04/U22_R01", 0}, {"D09/U23_R01", 0},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.trial, "/", "_"), func(t *testing.T) {
			t.Parallel()
			root := testenv.TopicRoot(t)
			in := subscribe(t, url, root)
			file := filepath.Join(data, "falls-weda", tc.trial+"_accel.csv")
			cfg := FallConfig{DeviceConfig: DeviceConfig{MQTTURL: url, Root: root, Site: "s1", Device: "fd-1", Logger: quietLogger()}, File: file, Speed: 20}
			if err := RunFall(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			end := time.Now()
			testenv.EventuallyTrue(t, waitLimit, "the shutdown status", func() bool { return len(in.on(device.ChanStatus)) >= 2 })
			var falls []*device.Event
			for _, m := range in.on(device.ChanEvent) {
				e, err := device.DecodeEvent(m.payload, m.at, device.Limits{})
				if err != nil {
					t.Fatalf("event rejected: %v\n%s", err, m.payload)
				}
				if e.TS > end.UnixMilli() {
					t.Fatalf("fall stamped in the future: %d > %d", e.TS, end.UnixMilli())
				}
				if e.Type == device.EventFall {
					falls = append(falls, e)
				}
			}
			if len(falls) != tc.falls {
				t.Fatalf("%s: %d fall events, want %d", tc.trial, len(falls), tc.falls)
			}
			for _, e := range falls {
				if p, _ := e.Attrs["peak_accel_ms2"].(float64); p < 3*9.80665 {
					t.Errorf("peak_accel_ms2 %v, want an impact >= 3 g", e.Attrs["peak_accel_ms2"])
				}
			}
			if n := len(in.on(device.ChanTelemetry)); n < 1 {
				t.Errorf("no battery reading")
			}
		})
	}
}

func TestDemoRegistryYAML(t *testing.T) {
	var doc struct {
		Sites []struct {
			ID    string `yaml:"id"`
			TZ    string `yaml:"timezone"`
			Rooms []struct {
				ID   string `yaml:"id"`
				Beds []struct {
					ID string `yaml:"id"`
				} `yaml:"beds"`
			} `yaml:"rooms"`
		} `yaml:"sites"`
		Residents []struct {
			ID, Bed, Site string
		} `yaml:"residents"`
		Devices []struct {
			ID, Kind, Site, Bed, Gateway string
		} `yaml:"devices"`
		Cards []struct {
			ID, Resident string
		} `yaml:"cards"`
		Bindings []struct {
			Device, Resident string
			From             time.Time
		} `yaml:"bindings"`
	}
	if err := yaml.Unmarshal(DemoRegistryYAML, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sites) != 2 || doc.Sites[0].ID != DemoSite || doc.Sites[0].TZ != DemoTimeZone || doc.Sites[1].ID != DemoHome || doc.Sites[1].TZ != DemoTimeZone {
		t.Fatalf("sites %+v, want %s and %s in %s", doc.Sites, DemoSite, DemoHome, DemoTimeZone)
	}
	beds := map[string]bool{}
	for _, r := range doc.Sites[0].Rooms {
		for _, b := range r.Beds {
			beds[b.ID] = true
		}
	}
	if len(beds) != 6 || len(doc.Residents) != 7 {
		t.Fatalf("%d station beds and %d residents, want 6 and 7 (six at the station, one at home)", len(beds), len(doc.Residents))
	}
	beds["home-li-bed"] = true
	residents := map[string]bool{}
	for _, r := range doc.Residents {
		if !beds[r.Bed] {
			t.Errorf("resident %s in unknown bed %q", r.ID, r.Bed)
		}
		residents[r.ID] = true
	}
	cards := map[string]string{}
	for _, c := range doc.Cards {
		cards[c.Resident] = c.ID
	}
	kinds := map[string]string{}
	for _, d := range doc.Devices {
		kinds[d.ID] = d.Kind
		if d.Site != DemoSite && d.Site != DemoHome || !device.Kind(d.Kind).Valid() {
			t.Errorf("device %+v: bad site or kind", d)
		}
	}
	bound := map[string]string{}
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range doc.Bindings {
		if !residents[b.Resident] || kinds[b.Device] == "" || !b.From.Equal(epoch) {
			t.Errorf("binding %+v: unknown resident or device, or not from %s", b, epoch)
		}
		bound[b.Device] = b.Resident
	}
	for id, kind := range kinds {
		// The canteen terminal is shared: the card says whose meal it is.
		// The kitchen fridge is a site-level device (facility safety).
		// A gateway is infrastructure, not anyone's device.
		if _, ok := bound[id]; !ok && kind != string(device.MealTerminal) && kind != string(device.Gateway) && id != "fridge-kitchen" {
			t.Errorf("device %s (%s) is not bound", id, kind)
		}
	}
	// The simulator runs exactly the devices of the registry.
	sim := map[string]device.Kind{demoSOS: device.SOSButton, demoMeal: device.MealTerminal}
	for _, b := range demoBeds {
		sim[b.vitals], sim[b.bed] = device.VitalsMonitor, device.BedSensor
		if cards[b.resident] != b.card {
			t.Errorf("resident %s: card %q in the registry, %q in the simulator", b.resident, cards[b.resident], b.card)
		}
		if bound[b.vitals] != b.resident || bound[b.bed] != b.resident {
			t.Errorf("resident %s: devices %s and %s not bound to them", b.resident, b.vitals, b.bed)
		}
	}
	for _, id := range demoFallDetectors {
		sim[id] = device.FallDetector
	}
	// The home's gateway is the real gateway runtime that `up --demo` runs
	// in front of the kit (cmd/eldercare/demohome.go); every kit device of
	// the home is registered behind it.
	sim["gw-home-li"] = device.Gateway
	for _, d := range doc.Devices {
		if d.Site == DemoHome && d.Kind != string(device.Gateway) && d.Gateway != "gw-home-li" {
			t.Errorf("device %s of the demo home is not behind gw-home-li (gateway %q)", d.ID, d.Gateway)
		}
	}
	for _, k := range demoKit {
		sim[k.cfg.Device] = k.cfg.Kind
		if site := map[string]string{}; true {
			for _, d := range doc.Devices {
				site[d.ID] = d.Site
			}
			if site[k.cfg.Device] != k.site {
				t.Errorf("device %s: site %q in the registry, %q in the simulator", k.cfg.Device, site[k.cfg.Device], k.site)
			}
		}
	}
	if len(sim) != len(kinds) {
		t.Errorf("simulator runs %d devices, registry lists %d", len(sim), len(kinds))
	}
	for id, k := range sim {
		if kinds[id] != string(k) {
			t.Errorf("device %s: kind %q in the registry, %q in the simulator", id, kinds[id], k)
		}
	}
}

func TestRunDemo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		recordings func(t *testing.T) string
	}{
		{"recordings", func(t *testing.T) string { return testenv.RealData(t) }},
		{"synthetic", func(t *testing.T) string { return t.TempDir() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := tc.recordings(t)
			url := testenv.EmbeddedBroker(t).URL()
			root := testenv.TopicRoot(t)
			in := subscribe(t, url, root)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			err := RunDemo(ctx, DemoConfig{MQTTURL: url, Root: root, Recordings: dir, Speed: 1, Logger: quietLogger()})
			if err != nil {
				t.Fatalf("RunDemo: %v", err)
			}
			vitals := map[string]int{}
			for _, m := range in.on(device.ChanTelemetry) {
				tel, err := device.DecodeTelemetry(m.payload, m.at, device.Limits{})
				if err != nil {
					t.Fatalf("telemetry rejected: %v\n%s", err, m.payload)
				}
				if _, ok := tel.Readings[0].Values["hr_bpm"]; ok || strings.HasPrefix(tel.Device, "vm-") {
					vitals[tel.Device]++
				}
			}
			if len(vitals) != 6 {
				t.Fatalf("telemetry from %d vitals monitors %v, want 6", len(vitals), vitals)
			}
			testenv.EventuallyTrue(t, waitLimit, "every device's shutdown status", func() bool {
				n := 0
				for _, m := range in.on(device.ChanStatus) {
					var s device.Status
					if json.Unmarshal(m.payload, &s) == nil && s.Reason == device.ReasonShutdown {
						n++
					}
				}
				return n == 17+len(demoKit) // the station's 17, the kit devices
			})
			// The meal round right after the start: the first tap comes 5 s
			// in, after this test's 3 s, so none is expected yet; every event
			// sent must be valid.
			for _, m := range in.on(device.ChanEvent) {
				if _, err := device.DecodeEvent(m.payload, m.at, device.Limits{}); err != nil {
					t.Fatalf("event rejected: %v\n%s", err, m.payload)
				}
			}
		})
	}
}
