package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

func newBenchAlertingCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerting",
		Short: "Measure fall event published -> first notification at a webhook, under telemetry load",
		Long: `alerting runs the alerting service (this process: embedded MQTT broker
or --mqtt, a fresh SQLite alert store in a temporary directory, a webhook
receiver on 127.0.0.1) while a load client publishes --rate readings/s of
normal vitals (QoS 1, one reading per message, over --devices devices), and
publishes --falls fall events (QoS 1, each on its own fall detector, evenly
spread over --duration). For every fall it measures the time from just
before the publish to the arrival of the alert's "opened" notification at
the webhook, and prints count, p50, p90, p99 and max, plus the readings/s
actually published. Bounded: it stops after --duration plus 10 s.

--cpu-hog N adds N busy loops competing for the CPU during the whole run:
stress-ng --cpu N when stress-ng is on the PATH (a separate process, as
another program on the machine would be), else N goroutines spinning in this
process (--cpu-hog-mode go forces that).`,
		Args: cobra.NoArgs,
		RunE: runBenchAlerting,
	}
	f := cmd.Flags()
	f.Duration("duration", 30*time.Second, "how long the load runs (falls are spread over it)")
	f.Int("falls", 200, "fall events published during the run")
	f.Int("rate", 5000, "telemetry readings per second published meanwhile (one reading per message)")
	f.Int("devices", 200, "vitals monitors the telemetry cycles through")
	f.String("mqtt", "", "external MQTT broker URL (default empty: an embedded broker on a free loopback port)")
	f.Int("cpu-hog", 0, "busy loops competing for the CPU during the run, e.g. 2 on a 2-core machine (default 0: none)")
	f.String("cpu-hog-mode", "auto", "how --cpu-hog spins: auto (stress-ng if installed, else go), stress-ng, or go (goroutines in this process)")
	f.String("cpu-profile", "", "write a Go CPU profile of the whole run (service, broker, load) to this file (default none)")
	return cmd
}

func runBenchAlerting(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	dur, falls, rate, devices := s.Duration("duration"), s.Int("falls"), s.Int("rate"), s.Int("devices")
	if dur <= 0 || falls <= 0 || rate < 0 || devices <= 0 {
		return errors.New("alerting: --duration, --falls and --devices must be positive, --rate not negative")
	}
	quiet := slog.New(slog.DiscardHandler)
	hog, err := startCPUHog(ctx, s.Int("cpu-hog"), s.String("cpu-hog-mode"))
	if err != nil {
		return err
	}
	defer hog.stop()
	if path := s.String("cpu-profile"); path != "" {
		pf, err := os.Create(path)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	out := cmd.OutOrStdout()

	mqttURL := s.String("mqtt")
	if mqttURL == "" {
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quiet})
		if err != nil {
			return fmt.Errorf("embedded broker: %w", err)
		}
		brokerDone := make(chan struct{})
		go func() { b.Run(ctx); close(brokerDone) }() // Run closes the broker when ctx ends
		defer func() { cancel(); <-brokerDone }()
		mqttURL = b.URL()
	}
	root := fmt.Sprintf("bench%d", time.Now().UnixNano()%1e9)

	dir, err := os.MkdirTemp("", "eldercare-bench-alerting-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(dir, "alerts.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := alerting.OpenManager(ctx, db, quiet)
	if err != nil {
		return err
	}

	// Webhook receiver: the first "opened" notification per fall detector.
	var mu sync.Mutex
	sent := map[string]time.Time{}
	lat := map[string]time.Duration{}
	toOpen := map[string]time.Duration{} // publish -> alert opened (store time, ms resolution)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		var c alerting.Change
		if json.Unmarshal(body, &c) == nil && c.Event == alerting.EventOpened && c.Alert.Type == alerting.TypeFall {
			mu.Lock()
			if t0, ok := sent[c.Alert.Device]; ok {
				if _, dup := lat[c.Alert.Device]; !dup {
					lat[c.Alert.Device] = at.Sub(t0)
					toOpen[c.Alert.Device] = c.Alert.OpenedAt.Sub(t0.Truncate(time.Millisecond))
				}
			}
			mu.Unlock()
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	svc, err := alerting.New(alerting.Config{MQTTURL: mqttURL, Root: root, ClientID: root + "-alerting",
		WebhookURL: "http://" + ln.Addr().String() + "/hook", WebhookSecret: "bench"}, m, nil, prometheus.NewRegistry(), quiet)
	if err != nil {
		return err
	}
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(ctx) }()

	connect := func(id string) (paho.Client, error) {
		return mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: root + "-" + id, CleanSession: true, Logger: quiet})
	}
	load, err := connect("load")
	if err != nil {
		return err
	}
	defer load.Disconnect(100)
	faller, err := connect("falls")
	if err != nil {
		return err
	}
	defer faller.Disconnect(100)
	time.Sleep(time.Second) // the service subscribes in OnConnect

	fmt.Fprintf(out, "bench alerting: %d falls over %s while %d readings/s flow (%d devices), broker %s, CPU hog: %s, %d CPUs\n",
		falls, dur, rate, devices, mqttURL, hog.desc, runtime.NumCPU())
	start := time.Now()
	var published atomic.Int64
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		const tick = 10 * time.Millisecond
		t := time.NewTicker(tick)
		defer t.Stop()
		seq := make([]uint64, devices)
		var due float64
		i := 0
		for time.Since(start) < dur {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			due += float64(rate) * tick.Seconds()
			for ; due >= 1; due-- {
				d := i % devices
				i++
				seq[d]++
				dev := fmt.Sprintf("vm-%04d", d)
				b, _ := json.Marshal(device.Telemetry{V: 1, Device: dev, Boot: 1, ID: seq[d], Seq: seq[d], TS: time.Now().UnixMilli(),
					Values: map[string]float64{"hr_bpm": 72, "spo2_pct": 97, "resp_per_min": 14}})
				load.Publish(device.Topic{Root: root, Site: "bench", Device: dev, Channel: device.ChanTelemetry}.String(), 1, false, b)
				published.Add(1)
			}
		}
	}()
	every := dur / time.Duration(falls)
	for i := range falls {
		next := start.Add(time.Duration(i)*every + every/2)
		time.Sleep(time.Until(next))
		dev := fmt.Sprintf("fd-%04d", i)
		b, _ := json.Marshal(device.Event{V: 1, Device: dev, Boot: 1, ID: 1, Seq: 1, TS: time.Now().UnixMilli(), Type: device.EventFall})
		mu.Lock()
		sent[dev] = time.Now()
		mu.Unlock()
		faller.Publish(device.Topic{Root: root, Site: "bench", Device: dev, Channel: device.ChanEvent}.String(), 1, false, b)
	}
	<-loadDone
	elapsed := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n == falls {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-svcDone

	mu.Lock()
	var ds, opens []time.Duration
	for dev, d := range lat {
		ds = append(ds, d)
		opens = append(opens, toOpen[dev])
	}
	mu.Unlock()
	slices.Sort(ds)
	slices.Sort(opens)
	pctOf := func(ds []time.Duration, p float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		k := int(p/100*float64(len(ds))+0.999999) - 1
		return ds[max(0, min(k, len(ds)-1))]
	}
	pct := func(p float64) time.Duration { return pctOf(ds, p) }
	fmt.Fprintf(out, "readings published: %d in %s (%.0f readings/s)\n", published.Load(), elapsed.Round(time.Millisecond),
		float64(published.Load())/elapsed.Seconds())
	fmt.Fprintf(out, "falls: %d published, %d notified, %d missing\n", falls, len(ds), falls-len(ds))
	if len(ds) > 0 {
		fmt.Fprintf(out, "fall -> first notification: p50 %s  p90 %s  p99 %s  max %s\n",
			pct(50).Round(10*time.Microsecond), pct(90).Round(10*time.Microsecond), pct(99).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond))
	}
	if len(opens) > 0 {
		fmt.Fprintf(out, "  of which publish -> alert stored (ms resolution): p50 %s  p99 %s  max %s\n",
			pctOf(opens, 50), pctOf(opens, 99), opens[len(opens)-1])
	}
	if len(ds) < falls {
		return fmt.Errorf("bench alerting: %d of %d falls were never notified", falls-len(ds), falls)
	}
	return nil
}

// cpuHog is a CPU load started by startCPUHog.
type cpuHog struct {
	desc string
	stop func()
}

// startCPUHog starts n busy loops until stop or ctx ends: stress-ng --cpu n
// (mode "stress-ng", or "auto" when it is installed), or n spinning
// goroutines in this process (mode "go").
func startCPUHog(ctx context.Context, n int, mode string) (*cpuHog, error) {
	if n <= 0 {
		return &cpuHog{desc: "none", stop: func() {}}, nil
	}
	path, lookErr := exec.LookPath("stress-ng")
	switch mode {
	case "auto":
		if lookErr != nil {
			mode = "go"
		} else {
			mode = "stress-ng"
		}
	case "stress-ng":
		if lookErr != nil {
			return nil, fmt.Errorf("--cpu-hog-mode stress-ng: %w", lookErr)
		}
	case "go":
	default:
		return nil, fmt.Errorf("--cpu-hog-mode %q: want auto, stress-ng or go", mode)
	}
	if mode == "stress-ng" {
		cmd := exec.Command(path, "--cpu", strconv.Itoa(n), "--quiet")
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start stress-ng: %w", err)
		}
		return &cpuHog{desc: fmt.Sprintf("stress-ng --cpu %d (pid %d)", n, cmd.Process.Pid), stop: func() {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}}, nil
	}
	hctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(1)
			for hctx.Err() == nil {
				for range 100000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			_ = x
		}()
	}
	return &cpuHog{desc: fmt.Sprintf("%d spinning goroutines in this process", n), stop: func() { cancel(); wg.Wait() }}, nil
}
