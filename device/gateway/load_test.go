package gateway

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/gateway/spool"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// TestSpoolingLoad is the documented benchmark command (docs/benchmarks.md,
// "Gateway: spooling"): it runs a gateway whose uplink is down for
// $ELDERCARE_GATEWAY_LOAD (e.g. 30s) while 10 devices hand it 1,000
// readings/s in total, and prints the process's RSS and CPU from /proc.
//
//	ELDERCARE_GATEWAY_LOAD=30s go test ./device/gateway -run TestSpoolingLoad -v -count=1
func TestSpoolingLoad(t *testing.T) {
	env := os.Getenv("ELDERCARE_GATEWAY_LOAD")
	if env == "" {
		t.Skip("set ELDERCARE_GATEWAY_LOAD=30s to run the spooling load benchmark")
	}
	dur, err := time.ParseDuration(env)
	if err != nil {
		t.Fatalf("ELDERCARE_GATEWAY_LOAD: %v", err)
	}
	const rate, devices = 1000, 10
	var devs []Device
	for i := range devices {
		devs = append(devs, Device{ID: fmt.Sprintf("vm-%d", i), Kind: device.VitalsMonitor, Interval: time.Second})
	}
	down := "tcp://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	sp := openSpool(t, "", spool.Config{})
	g, err := New(Config{ID: "gw-1", Site: "home-1", MQTTURL: down, Devices: devs}, sp, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	ctx := context.Background()
	cpu0, wall0 := cpuTime(t), time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for time.Since(wall0) < dur {
		<-tick.C
		// Catch up on ticks the ticker dropped: exactly rate per second.
		due := int(time.Since(wall0).Seconds()*rate) - sent
		for i := range due {
			v := map[string]float64{"hr_bpm": 60 + float64(sent%40), "pulse_bpm": 61, "resp_per_min": 16, "spo2_pct": 97}
			if err := g.Reading(ctx, devs[i%devices].ID, time.Now(), v); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	wall := time.Since(wall0)
	cpu := cpuTime(t) - cpu0
	rss, hwm := procStatus(t, "VmRSS"), procStatus(t, "VmHWM")
	entries, bytes := sp.Len()
	fmt.Printf("gateway spooling: %d readings in %s = %.0f readings/s; CPU %.2f s = %.1f %% of one core; RSS %s, peak RSS %s; spool %d entries, %d bytes\n",
		sent, wall.Round(time.Millisecond), float64(sent)/wall.Seconds(), cpu.Seconds(), 100*cpu.Seconds()/wall.Seconds(), rss, hwm, entries, bytes)
	if entries != int64(sent) {
		t.Errorf("spool holds %d entries, want %d", entries, sent)
	}
}

// cpuTime is this process's user+system CPU time from /proc/self/stat
// (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func cpuTime(t *testing.T) time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 on
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procStatus returns a line's value from /proc/self/status, e.g. "41236 kB".
func procStatus(t *testing.T, key string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
