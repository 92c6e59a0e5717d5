package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/internal/benchload"
	"github.com/eldercare-iot/eldercare/internal/influxd"
)

func newBenchIngestCmd() *cobra.Command {
	ing := &cobra.Command{
		Use:   "ingest",
		Short: "Run our ingest, Telegraf and a bare counting subscriber on the same broker and payloads",
		Long: `ingest publishes the same telemetry (QoS 1, --devices simulated
device ids) to a fresh Mosquitto that drops nothing, once per contender, and
measures how fast each stores it: a bare counting subscriber (the broker's
delivery ceiling), our ingest (eldercare ingest, as a child process; --eldercare-bin) and Telegraf
(mqtt_consumer with json_v2 into outputs.influxdb_v2, as a child process),
each into a fresh influxd; and, as the other bound, the same readings
written straight into a fresh influxd as line protocol (no MQTT; batches of
5000, 4 writers in parallel: what InfluxDB alone takes on this machine). It runs one phase with one reading per message
and one with --batch readings per message, prints progress every second,
and a table: messages/s, readings/s, ratio ours/Telegraf, CPU seconds per
reading and peak RSS of the consumer process, and readings lost (published
minus counted in InfluxDB); then, per contender, the CPU microseconds per
stored reading of the broker, influxd, the consumer and the publisher, their
sum and its ratio to Telegraf's, and the zero-cost bound (the readings/s an
ingest costing nothing would reach in that run: cores used / (broker +
influxd + publisher) per reading; docs/benchmarks.md). Optional contenders:
up (eldercare up with its embedded broker), plain (ours without the shared
subscription) and base (ours from --base-bin, for before/after runs).
Everything listens on 127.0.0.1.`,
		Args: cobra.NoArgs,
		RunE: runBenchIngest,
	}
	f := ing.Flags()
	f.Int("messages", 200_000, "messages published per contender and phase")
	f.Int("devices", 10_000, "simulated device ids the messages cycle through")
	f.Int("batch", 100, "readings per message in the gateway-batch phase (0 skips the phase)")
	f.Duration("timeout", 3*time.Minute, "longest one contender may take to store a phase before it counts as lost")
	f.String("telegraf", "", `Telegraf binary built with -tags "custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json_v2" (default $(go env GOPATH)/bin/telegraf-eldercare; "none" skips Telegraf)`)
	f.Int("inflight", 10_000, "broker's max_inflight_messages per client, also ingest's --max-in-flight and Telegraf's max_undelivered_messages")
	f.String("cpu-profile", "", "write a Go CPU profile of our ingest child to this file, one per phase with the phase's readings per message appended, and of the up child with \".up\" before that number (default none: no profiling)")
	f.String("only", "", "run only these contenders, comma-separated: ceiling, ours, plain (ours on a plain subscription), base (ours with --base-bin and --base-args), up, telegraf, influxdb (default ceiling, ours, telegraf, influxdb)")
	f.String("ours-args", "", "extra flags for our ingest child, space-separated (e.g. \"--shared-subscription=false --writers 1\"; default none)")
	f.String("eldercare-bin", "", "the eldercare binary whose ingest and up are measured (default: eldercare next to this binary, else on the PATH)")
	f.String("base-bin", "", "eldercare binary of contender base: our ingest as built from another commit, for before/after runs side by side (default --eldercare-bin)")
	f.String("base-args", "", "extra flags for contender base after --ours-args, space-separated (default none)")
	f.String("up-args", "", "extra flags for the up child of contender up, space-separated (default none)")
	return ing
}

type benchResult struct {
	name      string
	msgs      int
	readings  int
	stored    int64
	seconds   float64
	cpu       float64
	peakRSS   int64
	perMsg    int
	published time.Duration
	// load is the load average (1, 5, 15 min) when the contender started.
	load string
	// CPU seconds over the run of the broker, influxd and this process
	// (publisher, and the counting subscriber of the ceiling run).
	brokerCPU, influxCPU, selfCPU float64
}

func runBenchIngest(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	tg := s.String("telegraf")
	if tg == "" {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		tg = filepath.Join(string(trimNL(gopath)), "bin", "telegraf-eldercare")
	}
	if tg != "none" {
		if _, err := os.Stat(tg); err != nil {
			return fmt.Errorf("--telegraf %s: %w (build it with: go install -tags \"custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json_v2\" github.com/influxdata/telegraf/cmd/telegraf@v1.37.2 && cp $(go env GOPATH)/bin/telegraf $(go env GOPATH)/bin/telegraf-eldercare)", tg, err)
		}
	}
	self, err := eldercareBin(s)
	if err != nil {
		return err
	}
	influxBin, err := influxd.Find()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "eldercare-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	only := s.String("only")
	want := func(name string) bool { return only == "" || containsWord(only, name) }
	phases := []int{1}
	if b := s.Int("batch"); b > 1 {
		phases = append(phases, b)
	}
	var all [][]benchResult
	for _, perMsg := range phases {
		n := s.Int("messages")
		if perMsg > 1 {
			n = max(1, n/perMsg*5) // batches: 5x fewer readings than messages*perMsg keeps the phase short
		}
		fmt.Fprintf(out, "\n== phase: %d reading(s) per message, %d messages, %d devices ==\n", perMsg, n, s.Int("devices"))
		var rs []benchResult
		for _, name := range []string{"ceiling", "base", "ours", "plain", "up", "telegraf", "influxdb"} {
			optional := name == "up" || name == "plain" || name == "base"
			if !want(name) || name == "telegraf" && tg == "none" || optional && only == "" {
				continue
			}
			r, err := benchOne(ctx, out, name, dir, self, influxBin, tg, n, perMsg, s)
			if err != nil {
				// What was measured before is not lost with it.
				fmt.Fprintln(out)
				for _, done := range append(all, rs) {
					if len(done) > 0 {
						printBench(out, done)
					}
				}
				return fmt.Errorf("bench %s: %w", name, err)
			}
			rs = append(rs, r)
		}
		all = append(all, rs)
	}
	fmt.Fprintln(out)
	for _, rs := range all {
		printBench(out, rs)
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func containsWord(list, w string) bool {
	for _, x := range filepathSplit(list) {
		if x == w {
			return true
		}
	}
	return false
}

func filepathSplit(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// benchOne runs one contender on a fresh broker (and influxd).
func benchOne(ctx context.Context, out io.Writer, name, dir, self, influxBin, tg string, n, perMsg int, s *settings) (benchResult, error) {
	r := benchResult{name: name, msgs: n, readings: n * perMsg, perMsg: perMsg, load: loadAvg()}
	inflight := s.Int("inflight")
	// Contender up brings its own (embedded) broker; the others share a
	// fresh Mosquitto each.
	var mq *benchload.Mosquitto
	var mqttURL string
	if name != "up" {
		var err error
		if mq, err = benchload.StartMosquitto(ctx, dir, inflight); err != nil {
			return r, err
		}
		defer mq.Stop()
		mqttURL = mq.URL
	}
	root := "bench" + strconv.Itoa(perMsg)
	filter := root + "/v1/+/+/telemetry"
	// The readings' device time is now, as a device's: an hour back made
	// ours store every reading as skewed (received_ms and skewed=true, six
	// fields against Telegraf's four) until 2026-12-07 (docs/benchmarks.md).
	base := time.Now()
	topics, payloads := benchload.Payloads(root, n, s.Int("devices"), perMsg, base)

	var (
		metricsURL string // ours: its /metrics
		count      func() (int64, error)
		proc       *exec.Cmd
		srv        *influxd.Server
	)
	if name == "ceiling" {
		var got atomic.Int64
		c, err := benchload.Counter(ctx, mqttURL, "bench-ceiling", filter, &got)
		if err != nil {
			return r, err
		}
		defer c.Disconnect(100)
		count = func() (int64, error) { return got.Load() * int64(perMsg), nil }
	} else {
		var err error
		// influxd gets 30 s to answer /ping; on a machine loaded far beyond
		// its cores (load average 30 on 2 cores) it sometimes needs more,
		// and one slow start must not lose the run: up to three attempts.
		for attempt := 1; ; attempt++ {
			srv, err = influxd.Start(ctx, influxd.Options{Bin: influxBin,
				DataDir: filepath.Join(dir, name+strconv.Itoa(perMsg)+"-"+strconv.Itoa(attempt))})
			if err == nil || attempt == 3 || ctx.Err() != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "  %s: influxd did not start (attempt %d of 3), trying again: %v\n", name, attempt, firstLine(err))
		}
		if err != nil {
			return r, err
		}
		defer srv.Stop()
		if err := influxd.CreateDatabase(ctx, srv.URL(), "eldercare"); err != nil {
			return r, err
		}
		count = func() (int64, error) { return influxCount(ctx, srv.URL()) }
		switch name {
		case "ours", "base", "plain":
			httpPort, _ := benchload.FreePort()
			metricsURL = "http://127.0.0.1:" + strconv.Itoa(httpPort) + "/metrics"
			args := []string{"ingest", "--mqtt", mqttURL, "--root", root, "--client-id", "bench-" + name,
				"--influx", srv.URL(), "--db", "sqlite:" + filepath.Join(dir, name+".db"),
				"--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--max-in-flight", strconv.Itoa(min(inflight, 65535)),
				"--log-level", "warn"}
			args = append(args, strings.Fields(s.String("ours-args"))...)
			bin := self
			switch name {
			case "plain":
				args = append(args, "--shared-subscription=false")
			case "base":
				if b := s.String("base-bin"); b != "" {
					bin = b
				}
				args = append(args, strings.Fields(s.String("base-args"))...)
			}
			proc = exec.Command(bin, args...)
			if p := s.String("cpu-profile"); p != "" {
				proc.Env = append(os.Environ(), cpuProfileEnv+"="+p+"."+strconv.Itoa(perMsg))
			}
		case "up":
			// Everything in one process: embedded broker (open, on
			// loopback), ingest, alerting, dashboard; InfluxDB is this
			// run's fresh influxd, so that its CPU is measured apart.
			httpPort, _ := benchload.FreePort()
			mqttPort, _ := benchload.FreePort()
			mqttURL = "tcp://127.0.0.1:" + strconv.Itoa(mqttPort)
			args := []string{"up", "--data", filepath.Join(dir, "up"+strconv.Itoa(perMsg)),
				"--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--mqtt-listen", "127.0.0.1:" + strconv.Itoa(mqttPort),
				"--mqtt-auth", "off", "--influx", srv.URL(), "--root", root, "--log-level", "warn"}
			proc = exec.Command(self, append(args, strings.Fields(s.String("up-args"))...)...)
			if p := s.String("cpu-profile"); p != "" {
				proc.Env = append(os.Environ(), cpuProfileEnv+"="+p+".up."+strconv.Itoa(perMsg))
			}
		case "telegraf":
			conf := filepath.Join(dir, "telegraf.conf")
			if err := os.WriteFile(conf, []byte(telegrafConf(mqttURL, srv.URL(), filter, perMsg, inflight)), 0o600); err != nil {
				return r, err
			}
			proc = exec.Command(tg, "--config", conf)
		}
		if proc != nil {
			proc.Stderr = os.Stderr
			if err := proc.Start(); err != nil {
				return r, err
			}
			defer stopChild(proc)
			if name == "up" {
				if err := waitTCP(ctx, strings.TrimPrefix(mqttURL, "tcp://"), time.Minute); err != nil {
					return r, fmt.Errorf("up's embedded broker: %w", err)
				}
			}
			time.Sleep(3 * time.Second) // connect and subscribe (persistent session)
		}
	}
	var cpu0 float64
	if proc != nil {
		cpu0, _ = benchload.ProcCPU(proc.Process.Pid)
	}
	brokerCPU := func() float64 {
		if mq == nil {
			return 0 // up: the broker is in the consumer's process
		}
		c, _ := benchload.ProcCPU(mq.Cmd.Process.Pid)
		return c
	}
	broker0 := brokerCPU()
	self0, _ := benchload.ProcCPU(os.Getpid())
	var influx0 float64
	if srv != nil {
		influx0, _ = benchload.ProcCPU(srv.Pid())
	}
	var sent atomic.Int64
	start := time.Now()
	pubErr := make(chan error, 1)
	go func() {
		if name == "influxdb" {
			pubErr <- benchload.WriteInflux(ctx, srv.URL(), "eldercare/autogen", n, s.Int("devices"), perMsg, base, 5000, 4, &sent)
			return
		}
		pubErr <- benchload.Publish(ctx, mqttURL, "bench-pub-"+name, topics, payloads, 1000, &sent)
	}()
	deadline := start.Add(s.Duration("timeout"))
	var stored int64
	var pubDone bool
	// Counting is a query InfluxDB answers by reading every series (10,000
	// here): poll once a second until 90 % is stored, then every 100 ms
	// for the end time, so that the counting adds little to InfluxDB's CPU
	// per reading and no more to a slow contender's than to a fast one's.
	tick := time.NewTimer(time.Second)
	defer tick.Stop()
	for stored < int64(r.readings) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case err := <-pubErr:
			if err != nil {
				return r, err
			}
			pubDone = true
			r.published = time.Since(start)
		case <-tick.C:
		}
		c, err := count()
		if err != nil {
			fmt.Fprintf(out, "  %s: count: %v\n", name, err)
			continue
		}
		stored = c
		if stored*10 >= int64(r.readings)*9 {
			tick.Reset(100 * time.Millisecond)
		} else {
			tick.Reset(time.Second)
		}
		el := time.Since(start).Seconds()
		fmt.Fprintf(out, "  %-8s %5.1fs published %7d/%d msgs, stored %8d/%d readings (%.0f readings/s)\n",
			name, el, sent.Load(), n, stored, r.readings, float64(stored)/el)
	}
	r.seconds = time.Since(start).Seconds()
	if !pubDone {
		if err := <-pubErr; err != nil {
			return r, err
		}
	}
	broker1 := brokerCPU()
	self1, _ := benchload.ProcCPU(os.Getpid())
	r.brokerCPU, r.selfCPU = broker1-broker0, self1-self0
	if srv != nil {
		influx1, _ := benchload.ProcCPU(srv.Pid())
		r.influxCPU = influx1 - influx0
	}
	r.stored = stored
	if proc != nil {
		cpu1, _ := benchload.ProcCPU(proc.Process.Pid)
		r.cpu = cpu1 - cpu0
		r.peakRSS, _ = benchload.ProcPeakRSS(proc.Process.Pid)
		if metricsURL != "" {
			fmt.Fprintf(out, "  %s: %s\n", name, ingestBatchStats(ctx, metricsURL))
		}
		// A final count after a pause catches late points and duplicates.
		time.Sleep(time.Second)
		if c, err := count(); err == nil {
			r.stored = c
		}
	}
	return r, nil
}

// waitTCP waits until addr accepts TCP connections, at most d.
func waitTCP(ctx context.Context, addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not answer within %s: %w", addr, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ingestBatchStats summarises ingest's batch-latency histogram from its
// /metrics: batches written and their mean write time.
func ingestBatchStats(ctx context.Context, url string) string {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "metrics: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var sum, n float64
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "eldercare_ingest_batch_seconds_sum "); ok {
			sum, _ = strconv.ParseFloat(v, 64)
		}
		if v, ok := strings.CutPrefix(line, "eldercare_ingest_batch_seconds_count "); ok {
			n, _ = strconv.ParseFloat(v, 64)
		}
	}
	if n == 0 {
		return "no batches written"
	}
	return fmt.Sprintf("%.0f batches written, mean write time %.0f ms (eldercare_ingest_batch_seconds)", n, 1000*sum/n)
}

// stopChild asks proc to stop (SIGTERM, so our ingest finishes its CPU
// profile), and kills it after 10 s.
func stopChild(proc *exec.Cmd) {
	_ = proc.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = proc.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = proc.Process.Kill()
		<-done
	}
}

// influxCount counts points of measurement readings (field seq) with InfluxQL.
func influxCount(ctx context.Context, base string) (int64, error) {
	q := url.Values{"db": {"eldercare"}, "q": {`SELECT count("seq") FROM "readings"`}}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/query?"+q.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if len(body.Results) == 0 {
		return 0, errors.New("no results")
	}
	if e := body.Results[0].Error; e != "" {
		return 0, errors.New(e)
	}
	if len(body.Results[0].Series) == 0 || len(body.Results[0].Series[0].Values) == 0 {
		return 0, nil
	}
	v, _ := body.Results[0].Series[0].Values[0][1].(float64)
	return int64(v), nil
}

// telegrafConf configures Telegraf like ingest: QoS 1, persistent session,
// max_undelivered_messages as the in-flight bound, a metric buffer twice
// the readings that bound lets in (so Telegraf never drops from its buffer;
// 200,000 at least), batches of 5000 like ingest's, json_v2 parsing of the
// protocol's single or batch form, topic parsing for site and device, and
// the v2 output into database eldercare, policy autogen.
func telegrafConf(mqttURL, influxURL, filter string, perMsg, inflight int) string {
	parse := `
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "readings"
    timestamp_path = "ts"
    timestamp_format = "unix_ms"
    [[inputs.mqtt_consumer.json_v2.field]]
      path = "seq"
      type = "int"
    [[inputs.mqtt_consumer.json_v2.field]]
      path = "boot"
      type = "int"
    [[inputs.mqtt_consumer.json_v2.field]]
      path = "values.hr_bpm"
      rename = "hr_bpm"
    [[inputs.mqtt_consumer.json_v2.field]]
      path = "values.spo2_pct"
      rename = "spo2_pct"
`
	if perMsg > 1 {
		parse = `
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "readings"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "readings"
      timestamp_key = "ts"
      timestamp_format = "unix_ms"
      disable_prepend_keys = true
`
	}
	return fmt.Sprintf(`[agent]
  interval = "10s"
  flush_interval = "200ms"
  flush_jitter = "0s"
  metric_batch_size = 5000
  metric_buffer_limit = %d
  omit_hostname = true
  quiet = true

[[outputs.influxdb_v2]]
  urls = [%q]
  token = ""
  organization = ""
  bucket = "eldercare/autogen"

[[inputs.mqtt_consumer]]
  servers = [%q]
  topics = [%q]
  qos = 1
  persistent_session = true
  client_id = "bench-telegraf"
  max_undelivered_messages = %d
  data_format = "json_v2"
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = %q
    tags = "_/_/site/device/_"
%s`, max(200_000, 2*inflight*perMsg), influxURL, mqttURL, filter, inflight, filter, parse)
}

func printBench(out io.Writer, rs []benchResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(out, "%d reading(s) per message, %d messages:\n", rs[0].perMsg, rs[0].msgs)
	fmt.Fprintf(out, "  %-9s %10s %12s %9s %12s %13s %10s %8s\n", "consumer", "msgs/s", "readings/s", "of ceil", "vs telegraf", "CPU s/reading", "peak RSS", "lost")
	var ceil, tele float64
	for _, r := range rs {
		rate := float64(r.stored) / r.seconds
		switch r.name {
		case "ceiling":
			ceil = rate
		case "telegraf":
			tele = rate
		}
	}
	var teleCPU float64
	for _, r := range rs {
		if r.name == "telegraf" && r.stored > 0 {
			teleCPU = r.cpu / float64(r.stored)
		}
	}
	for _, r := range rs {
		rate := float64(r.stored) / r.seconds
		ofCeil, vsT, cpu, rss := "-", "-", "-", "-"
		if ceil > 0 {
			ofCeil = fmt.Sprintf("%.0f %%", 100*rate/ceil)
		}
		if tele > 0 {
			vsT = fmt.Sprintf("%.2fx", rate/tele)
		}
		if r.name != "ceiling" && r.name != "influxdb" && r.stored > 0 {
			cpu = fmt.Sprintf("%.2f us", 1e6*r.cpu/float64(r.stored))
			if teleCPU > 0 && r.name != "telegraf" {
				cpu += fmt.Sprintf(" (%.2fx)", (r.cpu/float64(r.stored))/teleCPU)
			}
			rss = fmt.Sprintf("%d MiB", r.peakRSS>>20)
		}
		lost := int64(r.readings) - r.stored
		fmt.Fprintf(out, "  %-9s %10.0f %12.0f %9s %12s %13s %10s %8d\n", r.name, rate/float64(r.perMsg), rate, ofCeil, vsT, cpu, rss, lost)
	}
	printCPU(out, rs)
}

// perReading is the CPU of one contender's run per stored reading, in
// microseconds, by process.
type perReading struct {
	broker, influx, consumer, publisher float64
	cores                               float64 // CPU seconds of all four / wall seconds
}

func (p perReading) sum() float64 { return p.broker + p.influx + p.consumer + p.publisher }

// bound is the readings/s an ingest that cost nothing would have reached
// in this run: the cores the run used over the CPU the broker, InfluxDB and
// the publisher spent per reading.
func (p perReading) bound() float64 {
	rest := p.broker + p.influx + p.publisher
	if rest <= 0 {
		return 0
	}
	return p.cores / (rest / 1e6)
}

func cpuPerReading(r benchResult) (perReading, bool) {
	if r.stored <= 0 || r.seconds <= 0 {
		return perReading{}, false
	}
	cons := r.cpu
	if r.name == "ceiling" || r.name == "influxdb" {
		cons = 0 // the ceiling's counter and the direct writer run in this process
	}
	us := 1e6 / float64(r.stored)
	return perReading{broker: r.brokerCPU * us, influx: r.influxCPU * us, consumer: cons * us, publisher: r.selfCPU * us,
		cores: (r.brokerCPU + r.influxCPU + cons + r.selfCPU) / r.seconds}, true
}

// printCPU prints, per contender, the CPU microseconds per stored reading of
// each process, their sum and its ratio to Telegraf's, the cores used, and
// the zero-cost bound with the share of it the contender reached
// (docs/benchmarks.md, "How to read the CPU table").
func printCPU(out io.Writer, rs []benchResult) {
	var tele float64
	for _, r := range rs {
		if p, ok := cpuPerReading(r); ok && r.name == "telegraf" {
			tele = p.sum()
		}
	}
	fmt.Fprintf(out, "  CPU microseconds per stored reading, by process; cores used; zero-cost bound (cores / (broker + influxd + publisher)):\n")
	fmt.Fprintf(out, "  %-9s %8s %8s %9s %9s %8s %11s %6s %12s %8s %15s\n", "consumer", "broker", "influxd", "consumer", "publisher", "sum",
		"vs telegraf", "cores", "bound/s", "of bound", "load at start")
	for _, r := range rs {
		p, ok := cpuPerReading(r)
		if !ok {
			fmt.Fprintf(out, "  %-9s nothing stored\n", r.name)
			continue
		}
		vsT, bound, ofBound, broker := "-", "-", "-", fmt.Sprintf("%.1f", p.broker)
		if tele > 0 && r.name != "ceiling" && r.name != "influxdb" {
			vsT = fmt.Sprintf("%.2fx", p.sum()/tele)
		}
		if r.name == "up" {
			broker = "(in up)"
		}
		if b := p.bound(); b > 0 && r.name != "ceiling" && r.name != "influxdb" {
			bound = fmt.Sprintf("%.0f", b)
			ofBound = fmt.Sprintf("%.0f %%", 100*float64(r.stored)/r.seconds/b)
			if r.name == "up" {
				bound += "*"
			}
		}
		fmt.Fprintf(out, "  %-9s %8s %8.1f %9.1f %9.1f %8.1f %11s %6.2f %12s %8s %15s\n", r.name, broker, p.influx, p.consumer,
			p.publisher, p.sum(), vsT, p.cores, bound, ofBound, r.load)
	}
	for _, r := range rs {
		if r.name == "up" {
			fmt.Fprintf(out, "  * up's broker runs in its own process (consumer column), so its bound leaves the broker out and is not comparable.\n")
		}
	}
}

// firstLine is the first line of err's text.
func firstLine(err error) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}
