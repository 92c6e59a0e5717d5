// Package benchload is the load generator and process meter of
// `eldercare-bench ingest` (cmd/eldercare-bench): it starts a Mosquitto that drops nothing,
// publishes protocol-v1 telemetry from many simulated devices at QoS 1, and
// reads a child process's CPU time and peak RSS from /proc (Linux only).
package benchload

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	influxdb2 "github.com/influxdata/influxdb-client-go/v2"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/mqttconn"
)

// MosquittoConf is the broker configuration for ingest (and for the
// benchmark): nothing is ever dropped. Mosquitto's defaults queue only
// 1,000 QoS 1 messages per client (max_queued_messages) and drop the rest;
// 0 lifts every limit (mosquitto.conf(5), Mosquitto 2.0).
// max_inflight_messages bounds what the broker sends a client before its
// PUBACKs: set it at most to ingest's --max-in-flight so ingest's memory
// stays bounded while InfluxDB is down (the broker queues the rest). %d is
// the port; the second %d the in-flight window.
const MosquittoConf = `listener %d 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages %d
max_inflight_bytes 0
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
`

// Mosquitto is a broker child process.
type Mosquitto struct {
	Cmd *exec.Cmd
	URL string
}

// StartMosquitto starts /usr/sbin/mosquitto (or mosquitto on $PATH) on a
// free loopback port with MosquittoConf in dir, and waits until it accepts
// TCP connections (10 s).
func StartMosquitto(ctx context.Context, dir string, inflight int) (*Mosquitto, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(MosquittoConf, port, inflight)), 0o600); err != nil {
		return nil, fmt.Errorf("write mosquitto config: %w", err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("mosquitto on %s did not answer: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Mosquitto{Cmd: cmd, URL: "tcp://" + addr}, nil
}

// Stop kills the broker.
func (m *Mosquitto) Stop() {
	_ = m.Cmd.Process.Kill()
	_ = m.Cmd.Wait()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Payloads builds n telemetry messages under root from `devices` device ids
// (d-00000 ... cycling) with perMsg readings each (perMsg 1: the single
// form). Reading k of message i has seq i*perMsg+k+1 and device time
// ReadingTime(base, i, k, devices, perMsg), so every reading is a distinct
// point.
// ReadingTime is the device time (Unix ms) of reading k of message i: base
// plus the reading's place among its device's readings, in ms. A device's
// readings are a millisecond apart, so all of a run's readings lie within
// n/devices*perMsg ms of base (100 ms for 10,000 devices and a million
// readings): taken with base = the start of publishing, every reading is
// within ingest's --skew (5 min) of its receive time, as a device's reading
// is, and none is stored as skewed (with received_ms and skewed=true).
func ReadingTime(base time.Time, i, k, devices, perMsg int) int64 {
	return base.UnixMilli() + int64((i/devices)*perMsg+k)
}

func Payloads(root string, n, devices, perMsg int, base time.Time) (topics []string, payloads [][]byte) {
	topics, payloads = make([]string, n), make([][]byte, n)
	for i := range n {
		dev := fmt.Sprintf("d-%05d", i%devices)
		tel := device.Telemetry{V: 1, Device: dev, Boot: 1, ID: uint64(i + 1)}
		first := uint64(i*perMsg + 1)
		if perMsg == 1 {
			tel.Seq, tel.TS = first, ReadingTime(base, i, 0, devices, 1)
			tel.Values = map[string]float64{"hr_bpm": 60 + float64(i%40), "spo2_pct": 97}
		} else {
			tel.Readings = make([]device.Reading, perMsg)
			for k := range perMsg {
				seq := first + uint64(k)
				tel.Readings[k] = device.Reading{Seq: seq, TS: ReadingTime(base, i, k, devices, perMsg),
					Values: map[string]float64{"hr_bpm": 60 + float64(k%40), "spo2_pct": 97}}
			}
		}
		b, _ := json.Marshal(tel)
		topics[i] = device.Topic{Root: root, Site: "bench", Device: dev, Channel: device.ChanTelemetry}.String()
		payloads[i] = b
	}
	return topics, payloads
}

// Publish sends every payload at QoS 1 with up to window unacknowledged
// publishes, and returns when the broker acknowledged all of them.
func Publish(ctx context.Context, mqttURL, clientID string, topics []string, payloads [][]byte, window int, sent *atomic.Int64) error {
	c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: clientID, CleanSession: true, MaxInflight: window})
	if err != nil {
		return err
	}
	defer c.Disconnect(250)
	toks := make(chan paho.Token, window)
	errc := make(chan error, 1)
	go func() {
		for tok := range toks {
			if err := mqttconn.Wait(ctx, tok, time.Minute, "publish"); err != nil {
				select {
				case errc <- err:
				default:
				}
			}
			sent.Add(1)
		}
		close(errc)
	}()
	for i := range payloads {
		if ctx.Err() != nil {
			break
		}
		toks <- c.Publish(topics[i], 1, false, payloads[i])
	}
	close(toks)
	if err := <-errc; err != nil {
		return err
	}
	return ctx.Err()
}

// Counter is a bare QoS 1 subscriber that counts messages: the rate at
// which the broker delivers to one subscriber, the ceiling.
func Counter(ctx context.Context, mqttURL, clientID, filter string, n *atomic.Int64) (paho.Client, error) {
	h := func(_ paho.Client, m paho.Message) { n.Add(1); m.Ack() }
	c, err := mqttconn.Connect(ctx, mqttconn.Options{URL: mqttURL, ClientID: clientID, CleanSession: false,
		DefaultHandler: h, AutoAckDisabled: true, OrderMatters: true, MaxInflight: 10000})
	if err != nil {
		return nil, err
	}
	if err := mqttconn.Wait(ctx, c.Subscribe(filter, 1, h), 10*time.Second, "subscribe "+filter); err != nil {
		c.Disconnect(100)
		return nil, err
	}
	return c, nil
}

// ProcCPU returns the user+system CPU seconds of process pid
// (/proc/pid/stat fields 14 and 15, in clock ticks of 1/100 s).
func ProcCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100, nil
}

// ProcPeakRSS returns VmHWM of process pid in bytes.
func ProcPeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// WriteInflux writes the readings that Payloads(_, n, devices, perMsg, base)
// carries straight into InfluxDB at influxURL, bucket (database/policy), as
// line protocol in requests of batch lines from `writers` goroutines, with
// the tags and fields ingest writes (readings,device=..,site=bench
// boot=..i,hr_bpm=..,seq=..i,spo2_pct=..; received_ms only on skewed
// readings, which these are not). It is the
// benchmark's other bound: the rate InfluxDB alone takes these points. sent
// counts messages whose readings were written.
func WriteInflux(ctx context.Context, influxURL, bucket string, n, devices, perMsg int, base time.Time, batch, writers int, sent *atomic.Int64) error {
	client := influxdb2.NewClientWithOptions(influxURL, "", influxdb2.DefaultOptions().SetPrecision(time.Millisecond))
	defer client.Close()
	w := client.WriteAPIBlocking("", bucket)
	msgsPerReq := max(1, batch/perMsg)
	next := atomic.Int64{}
	errc := make(chan error, writers)
	for range writers {
		go func() {
			buf := make([]byte, 0, 128*msgsPerReq*perMsg)
			for {
				first := int(next.Add(int64(msgsPerReq))) - msgsPerReq
				if first >= n || ctx.Err() != nil {
					errc <- ctx.Err()
					return
				}
				last := min(n, first+msgsPerReq)
				buf = buf[:0]
				for i := first; i < last; i++ {
					for k := range perMsg {
						seq := i*perMsg + k + 1
						hr := 60 + i%40
						if perMsg > 1 {
							hr = 60 + k%40
						}
						buf = fmt.Appendf(buf, "readings,device=d-%05d,site=bench boot=1i,hr_bpm=%d,seq=%di,spo2_pct=97 %d\n",
							i%devices, hr, seq, ReadingTime(base, i, k, devices, perMsg))
					}
				}
				if err := w.WriteRecord(ctx, string(buf[:len(buf)-1])); err != nil {
					errc <- fmt.Errorf("write to %s: %w", influxURL, err)
					return
				}
				sent.Add(int64(last - first))
			}
		}()
	}
	var first error
	for range writers {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}
