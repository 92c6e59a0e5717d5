package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/eldercare-iot/eldercare/alerting"
	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/device/registry"
	"github.com/eldercare-iot/eldercare/internal/benchload"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
	"github.com/eldercare-iot/eldercare/internal/sqldb"
)

func newBenchSSECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sse",
		Short: "Measure the dashboard's live feed with many SSE clients: latency, RSS, abrupt drops",
		Long: `sse runs the dashboard in this process (embedded MQTT broker on a
free loopback port, a fresh SQLite store in a temporary directory, one admin
account) and connects --clients SSE clients to /events from two child
processes (half each), all logged in with one session. It then publishes
--events telemetry messages (QoS 1, --interval apart) of one device, each
carrying its sequence number, and measures for every client and event the
time from just before the MQTT publish to the client reading the SSE frame
(wall clock, same machine): count, lost, p50, p90, p99 and max. It reports
the process's RSS (server, broker and publisher; the clients are in the
children) and goroutines before, with the clients, after SIGKILL of one
child (half the clients drop abruptly: the server notices at its next write
to each, so the bench keeps publishing until the client gauge
eldercare_dashboard_sse_clients settles, and reports how long that took),
and after the other child closes its streams normally. Bounded: each phase
stops after --timeout.`,
		Args: cobra.NoArgs,
		RunE: runBenchSSE,
	}
	f := cmd.Flags()
	f.Int("clients", 1000, "SSE clients, split over two child processes")
	f.Int("events", 100, "telemetry messages published per measured phase")
	f.Duration("interval", 50*time.Millisecond, "time between two published messages")
	f.Duration("timeout", time.Minute, "longest one phase may take (connecting, delivering, settling after the drop)")
	f.Duration("heartbeat", 15*time.Second, "the server's SSE heartbeat interval (dashboard default 15s)")
	// The child processes' flags (internal).
	f.String("child-url", "", "internal: run as a child, reading http://.../events with --child-cookie")
	f.String("child-cookie", "", "internal: the session cookie of the child's clients")
	f.Int("child-clients", 0, "internal: the child's number of clients")
	for _, n := range []string{"child-url", "child-cookie", "child-clients"} {
		_ = f.MarkHidden(n)
	}
	return cmd
}

func runBenchSSE(cmd *cobra.Command, _ []string) error {
	s, err := loadSettings(cmd)
	if err != nil {
		return err
	}
	if u := s.String("child-url"); u != "" {
		return runSSEChild(cmd.Context(), u, s.String("child-cookie"), s.Int("child-clients"))
	}
	clients, events, interval, timeout := s.Int("clients"), s.Int("events"), s.Duration("interval"), s.Duration("timeout")
	if clients < 2 || events < 1 || interval <= 0 || timeout <= 0 {
		return errors.New("bench sse: --clients at least 2, --events at least 1, --interval and --timeout positive")
	}
	raiseFileLimit(2*clients + 256)
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	out := cmd.OutOrStdout()
	quiet := slog.New(slog.DiscardHandler)

	dir, err := os.MkdirTemp("", "eldercare-bench-sse-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	brk, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		return err
	}
	defer brk.Close()
	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(dir, "bench.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := registry.Open(ctx, db)
	if err != nil {
		return err
	}
	mgr, err := alerting.OpenManager(ctx, db, quiet)
	if err != nil {
		return err
	}
	acc, err := dashboard.OpenAccounts(ctx, db, time.Now)
	if err != nil {
		return err
	}
	password := dashboard.GeneratePassword()
	if _, err := acc.Add(ctx, dashboard.User{Username: "bench", Name: "Bench", Role: dashboard.RoleAdmin, Lang: "en"}, password); err != nil {
		return fmt.Errorf("bench sse: add the bench account: %w", err)
	}
	port, err := benchload.FreePort()
	if err != nil {
		return err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	const root = "benchsse"
	dash, err := dashboard.New(dashboard.Config{
		HTTPAddr: "127.0.0.1:" + strconv.Itoa(port), APIToken: dashboard.GeneratePassword() + "-bench-token",
		MQTTURL: brk.URL(), Root: root, ClientID: "bench-sse-dashboard",
		InfluxURL: "http://127.0.0.1:1", SSEHeartbeat: s.Duration("heartbeat"),
	}, dashboard.Deps{
		Alerts: mgr, Registry: store, Vitals: noVitals{}, Accounts: acc, Unknown: mgr,
		AckLinks: mgr, Doses: mgr, Trends: mgr, ResponseTimes: mgr, Escalations: mgr, Thresholds: mgr, Policies: mgr, Settings: mgr,
		Cards: store, Beds: store, Onboard: store, Binder: store, Importer: store,
	}, prometheus.NewRegistry(), quiet)
	if err != nil {
		return err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- dash.Run(ctx) }()
	if err := waitHealthy(ctx, base+"/healthz", 30*time.Second); err != nil {
		return err
	}
	cookie, err := benchLogin(ctx, base, "bench", password)
	if err != nil {
		return err
	}
	feed := dash.Feed()

	// Reset the peak RSS (VmHWM): hashing the bench password with argon2id
	// (64 MiB) is not the server's load.
	before := procSnapshot()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err == nil {
		before.hwm = procSnapshot().hwm
	}
	fmt.Fprintf(out, "server up at %s; load average %s; before clients: %s\n", base, loadAvg(), before)

	// Two children, half the clients each.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	recv := make(chan sseRecv, 4096)
	var kids [2]*sseChild
	for i := range kids {
		n := clients / 2
		if i == 1 {
			n = clients - clients/2
		}
		k, err := startSSEChild(ctx, self, base+"/events", cookie, n, recv)
		if err != nil {
			return err
		}
		defer k.stop()
		kids[i] = k
	}
	start := time.Now()
	for feed.Subscribers() < clients {
		if time.Since(start) > timeout {
			return fmt.Errorf("bench sse: %d of %d clients connected after %v", feed.Subscribers(), clients, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(out, "%d clients connected in %v\n", clients, time.Since(start).Round(time.Millisecond))
	with := procSnapshot()
	fmt.Fprintf(out, "with %d clients: %s\n", clients, with)

	pub, err := mqttconn.Connect(ctx, mqttconn.Options{URL: brk.URL(), ClientID: "bench-sse-device", CleanSession: true})
	if err != nil {
		return err
	}
	defer pub.Disconnect(100)
	seq := 0
	var mu sync.Mutex
	sent := map[int]int64{} // seq -> publish wall time, ns
	publish := func() error {
		seq++
		now := time.Now()
		mu.Lock()
		sent[seq] = now.UnixNano()
		mu.Unlock()
		payload := fmt.Sprintf(`{"v":1,"device":"bench-1","boot":1,"id":%d,"seq":%d,"ts":%d,"values":{"bench_seq":%d}}`, seq, seq, now.UnixMilli(), seq)
		return mqttconn.Wait(ctx, pub.Publish(root+"/v1/bench-site/bench-1/telemetry", 1, false, payload), 10*time.Second, "publish")
	}
	// measure publishes n events and collects want frames of them.
	measure := func(name string, n, want int) ([]time.Duration, int, error) {
		first := seq + 1
		pubErr := make(chan error, 1)
		go func() {
			for i := 0; i < n; i++ {
				if err := publish(); err != nil {
					pubErr <- err
					return
				}
				time.Sleep(interval)
			}
			pubErr <- nil
		}()
		var lat []time.Duration
		deadline := time.After(timeout)
		published := false
		for len(lat) < want {
			select {
			case r := <-recv:
				if r.seq < first {
					continue
				}
				mu.Lock()
				at, ok := sent[r.seq]
				mu.Unlock()
				if ok {
					lat = append(lat, time.Duration(r.ns-at))
				}
			case err := <-pubErr:
				if err != nil {
					return lat, want - len(lat), err
				}
				published = true
				// After the last publish, give the frames 5 s more.
				deadline = time.After(5 * time.Second)
			case <-deadline:
				if !published {
					return lat, want - len(lat), fmt.Errorf("bench sse: %s: publishing did not finish within %v", name, timeout)
				}
				return lat, want - len(lat), nil
			}
		}
		return lat, 0, nil
	}

	lat1, lost1, err := measure("all clients", events, clients*events)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "phase 1, %d clients x %d events: %s, lost %d\n", clients, events, latencyLine(lat1), lost1)

	// Abrupt drop: SIGKILL the first child.
	goBefore := runtime.NumGoroutine()
	kill := time.Now()
	dropped := kids[0].n
	if err := kids[0].kill(); err != nil {
		return err
	}
	keep := clients - dropped
	drainUntil := time.Now().Add(timeout)
	nudges := 0
	for feed.Subscribers() > keep && time.Now().Before(drainUntil) {
		// The server notices a dead peer when it writes to it.
		if err := publish(); err != nil {
			return err
		}
		nudges++
		time.Sleep(interval)
	}
	settle := time.Since(kill)
	drainRecv(recv, 500*time.Millisecond)
	afterDrop := procSnapshot()
	fmt.Fprintf(out, "killed %d clients (SIGKILL of their process): gauge %d -> %d in %v (%d events published meanwhile); goroutines %d -> %d; %s\n",
		dropped, clients, feed.Subscribers(), settle.Round(time.Millisecond), nudges, goBefore, runtime.NumGoroutine(), afterDrop)
	if feed.Subscribers() != keep {
		return fmt.Errorf("bench sse: the client gauge is %d %v after the drop, want %d", feed.Subscribers(), timeout, keep)
	}

	lat2, lost2, err := measure("survivors", events, keep*events)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "phase 2, %d surviving clients x %d events: %s, lost %d\n", keep, events, latencyLine(lat2), lost2)

	// The other child closes its streams normally.
	if err := kids[1].close(); err != nil {
		return err
	}
	closeAt := time.Now()
	for feed.Subscribers() > 0 && time.Since(closeAt) < timeout {
		if err := publish(); err != nil {
			return err
		}
		time.Sleep(interval)
	}
	gone := time.Since(closeAt)
	// Idle connection workers of the HTTP server (fasthttp's worker pool)
	// end after their idle time; wait for the goroutines to come back.
	for runtime.NumGoroutine() > before.goroutines+50 && time.Since(closeAt) < timeout {
		time.Sleep(250 * time.Millisecond)
	}
	back := time.Since(closeAt)
	after := procSnapshot()
	fmt.Fprintf(out, "all clients gone: gauge %d in %v; goroutines back to %d in %v; %s\n", feed.Subscribers(), gone.Round(time.Millisecond), after.goroutines, back.Round(100*time.Millisecond), after)

	fmt.Fprintf(out, "\nSummary (%d SSE clients, %d events per phase, %v apart, heartbeat %v):\n", clients, events, interval, s.Duration("heartbeat"))
	fmt.Fprintf(out, "  event -> client, all %d clients:   %s, lost %d\n", clients, latencyLine(lat1), lost1)
	fmt.Fprintf(out, "  event -> client, %d survivors:     %s, lost %d\n", keep, latencyLine(lat2), lost2)
	fmt.Fprintf(out, "  server process RSS: %d MiB before clients, %d MiB with %d clients, %d MiB peak (VmHWM since the clients came); goroutines %d / %d / %d (before / with / after all left)\n",
		before.rss>>20, with.rss>>20, clients, after.hwm>>20, before.goroutines, with.goroutines, after.goroutines)
	fmt.Fprintf(out, "  abrupt drop of %d clients: gauge settled to %d in %v; after all left, goroutines back to %d (within 50 of the start) in %v\n", dropped, keep, settle.Round(time.Millisecond), after.goroutines, back.Round(100*time.Millisecond))
	fmt.Fprintf(out, "  load average at the end: %s\n", loadAvg())
	cancel()
	if err := <-srvDone; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if lost1 > 0 || lost2 > 0 {
		return fmt.Errorf("bench sse: %d frames lost", lost1+lost2)
	}
	return nil
}

type noVitals struct{}

func (noVitals) ResidentVitals(context.Context, string, time.Time, time.Time) (map[string][]dashboard.Point, error) {
	return nil, nil
}

type procStats struct {
	rss, hwm   int64
	goroutines int
	heap       uint64
}

func (p procStats) String() string {
	return fmt.Sprintf("RSS %d MiB (peak %d MiB), Go heap %d MiB, %d goroutines", p.rss>>20, p.hwm>>20, p.heap>>20, p.goroutines)
}

// procSnapshot returns this process's RSS after returning free memory to
// the OS (so earlier garbage, e.g. argon2id's 64 MiB per password hash,
// does not count), its peak RSS, Go heap and goroutines.
func procSnapshot() procStats {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p := procStats{goroutines: runtime.NumGoroutine(), heap: ms.HeapInuse}
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			p.rss = n << 10
		} else {
			p.hwm = n << 10
		}
	}
	return p
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func latencyLine(d []time.Duration) string {
	if len(d) == 0 {
		return "no frames"
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return fmt.Sprintf("%d frames, p50 %v, p90 %v, p99 %v, max %v", len(d),
		q(0.50).Round(10*time.Microsecond), q(0.90).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
}

func raiseFileLimit(n int) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < uint64(n) {
		l.Cur = min(uint64(n), l.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func waitHealthy(ctx context.Context, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench sse: %s not healthy after %v (last error %v)", url, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var loginFieldRe = regexp.MustCompile(`name="_csrf"\s+value="([^"]+)"`)

// benchLogin logs in through the login form and returns the session
// cookie as "name=value".
func benchLogin(ctx context.Context, base, username, password string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/login", nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("bench sse: GET /login: %w", err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{"username": {username}, "password": {password}}
	if m := loginFieldRe.FindSubmatch(page); m != nil {
		form.Set("_csrf", string(m[1]))
	}
	req, _ = http.NewRequestWithContext(ctx, "POST", base+"/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = c.Do(req)
	if err != nil {
		return "", fmt.Errorf("bench sse: POST /login: %w", err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "eldercare_session" && ck.Value != "" {
			return ck.Name + "=" + ck.Value, nil
		}
	}
	return "", fmt.Errorf("bench sse: login answered %d without a session cookie", resp.StatusCode)
}

// sseRecv is one frame a child client read: the event's sequence number
// and the wall time (ns) it was read.
type sseRecv struct {
	seq int
	ns  int64
}

type sseChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	n     int
	done  chan struct{}
}

// startSSEChild starts a child process with n clients and waits until all
// of them read the stream's first line.
func startSSEChild(ctx context.Context, self, url, cookie string, n int, recv chan<- sseRecv) (*sseChild, error) {
	cmd := exec.Command(self, "sse", "--child-url", url, "--child-cookie", cookie, "--child-clients", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench sse: start child: %w", err)
	}
	k := &sseChild{cmd: cmd, stdin: stdin, n: n, done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(k.done)
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				ready <- nil
				sent = true
				continue
			}
			var seq int
			var ns int64
			if _, err := fmt.Sscanf(line, "R %d %d", &seq, &ns); err == nil {
				recv <- sseRecv{seq: seq, ns: ns}
			}
		}
		if !sent {
			ready <- errors.New("bench sse: a child exited before its clients were connected")
		}
		_ = cmd.Wait()
	}()
	select {
	case err := <-ready:
		if err != nil {
			k.stop()
			return nil, err
		}
	case <-time.After(time.Minute):
		k.stop()
		return nil, errors.New("bench sse: a child's clients did not connect within a minute")
	case <-ctx.Done():
		k.stop()
		return nil, ctx.Err()
	}
	return k, nil
}

// kill ends the child with SIGKILL: its connections drop without goodbye.
func (k *sseChild) kill() error {
	if err := k.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("bench sse: kill child: %w", err)
	}
	<-k.done
	return nil
}

// close asks the child to close its streams and exit.
func (k *sseChild) close() error {
	_ = k.stdin.Close()
	select {
	case <-k.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
		return errors.New("bench sse: a child did not exit within 30 s of closing its stdin")
	}
}

func (k *sseChild) stop() {
	if k.cmd.ProcessState == nil {
		_ = k.cmd.Process.Kill()
	}
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
	}
}

func drainRecv(c <-chan sseRecv, quiet time.Duration) {
	for {
		select {
		case <-c:
		case <-time.After(quiet):
			return
		}
	}
}

// runSSEChild connects n SSE clients to url, prints "ready" when every one
// has read the stream's first line, then "R <seq> <unix ns>" for every
// device frame with a bench_seq reading, until stdin closes.
func runSSEChild(ctx context.Context, url, cookie string, n int) error {
	raiseFileLimit(n + 256)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	tr := &http.Transport{MaxIdleConnsPerHost: -1, DisableCompression: true}
	client := &http.Client{Transport: tr}
	lines := make(chan string, 8192)
	var wg sync.WaitGroup
	connected := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			req.Header.Set("Cookie", cookie)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := client.Do(req)
			if err != nil {
				connected <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				connected <- fmt.Errorf("GET %s: %s", url, resp.Status)
				return
			}
			br := bufio.NewReaderSize(resp.Body, 16<<10)
			first := true
			var frame struct {
				Device struct {
					Latest map[string]struct {
						V float64 `json:"v"`
					} `json:"latest"`
				} `json:"device"`
			}
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					if first {
						connected <- err
					}
					return
				}
				if first {
					first = false
					connected <- nil
				}
				data, ok := strings.CutPrefix(string(line), "data: ")
				if !ok {
					continue
				}
				now := time.Now().UnixNano()
				frame.Device.Latest = nil
				if json.Unmarshal([]byte(data), &frame) != nil {
					continue
				}
				if v, ok := frame.Device.Latest["bench_seq"]; ok {
					lines <- "R " + strconv.Itoa(int(v.V)) + " " + strconv.FormatInt(now, 10)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-connected; err != nil {
			return fmt.Errorf("bench sse child: client %d: %w", i, err)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "ready")
	w.Flush()
	go func() { wg.Wait(); close(lines) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return w.Flush()
			}
			fmt.Fprintln(w, l)
		case <-tick.C:
			if err := w.Flush(); err != nil {
				return err
			}
		case <-ctx.Done():
			w.Flush()
			tr.CloseIdleConnections()
			return nil
		}
	}
}
