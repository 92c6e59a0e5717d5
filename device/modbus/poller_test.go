package modbus_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eldercare-iot/eldercare/device/modbus"
	"github.com/eldercare-iot/eldercare/firmware-sim/modbussim"
)

// recorder is a Sink that keeps everything.
type recorder struct {
	mu       sync.Mutex
	readings []reading
	faults   []fault
}

type reading struct {
	device string
	ts     time.Time
	values map[string]float64
}

type fault struct {
	device string
	err    error
}

func (r *recorder) Reading(_ context.Context, dev string, ts time.Time, v map[string]float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.readings = append(r.readings, reading{dev, ts, v})
	return nil
}

func (r *recorder) Fault(dev string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, fault{dev, err})
}

func (r *recorder) take() ([]reading, []fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rd, f := r.readings, r.faults
	r.readings, r.faults = nil, nil
	return rd, f
}

// startSim serves the given models (slave i+1 for models[i]) on a loopback
// port until the test ends.
func startSim(t testing.TB, framing modbussim.Framing, models ...string) (*modbussim.Server, string) {
	t.Helper()
	s := modbussim.New(framing, nil)
	for i, m := range models {
		if err := s.AddModel(m, byte(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulator: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func newPoller(t testing.TB, transport modbus.Transport, addr string, timeout time.Duration, devs ...modbus.DeviceConfig) (*modbus.Poller, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := modbus.New(modbus.Config{Buses: []modbus.BusConfig{{Transport: transport, Address: addr, Timeout: timeout, Devices: devs}}}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

func TestPollShippedProfiles(t *testing.T) {
	t.Parallel()
	for _, framing := range []struct {
		name      string
		framing   modbussim.Framing
		transport modbus.Transport
	}{{"tcp", modbussim.TCP, modbus.TCP}, {"rtu-over-tcp", modbussim.RTUOverTCP, modbus.RTUOverTCP}} {
		t.Run(framing.name, func(t *testing.T) {
			_, addr := startSim(t, framing.framing, modbussim.XYMD02, modbussim.SenseairS8, modbussim.SDM120)
			p, _ := newPoller(t, framing.transport, addr, time.Second,
				modbus.DeviceConfig{ID: "th-1", Profile: "xy-md02", Slave: 1},
				modbus.DeviceConfig{ID: "co2-1", Profile: "senseair-s8", Slave: 2},
				modbus.DeviceConfig{ID: "em-1", Profile: "sdm120", Slave: 3})
			var rec recorder
			if err := p.PollAll(context.Background(), &rec); err != nil {
				t.Fatal(err)
			}
			rd, faults := rec.take()
			if len(faults) != 0 {
				t.Fatalf("faults: %v", faults)
			}
			want := map[string]map[string]float64{
				"th-1":  {"room_temp_c": 23.5, "humidity_pct": 45.6},
				"co2-1": {"co2_ppm": 612},
				"em-1":  {"voltage_v": float64(float32(230.1)), "frequency_hz": 50, "energy_kwh": 1234.5},
			}
			if len(rd) != 3 {
				t.Fatalf("%d readings, want 3: %+v", len(rd), rd)
			}
			for _, r := range rd {
				for k, v := range want[r.device] {
					if got := r.values[k]; got < v-1e-9 || got > v+1e-9 {
						t.Errorf("%s %s = %v, want %v", r.device, k, got, v)
					}
				}
			}
			if n := len(rd[2].values); n != 10 {
				t.Errorf("sdm120 reading has %d values, want 10", n)
			}
		})
	}
}

// TestFaultsRecover injects each fault into the simulator and checks that
// the poll it hits reports it with the right result, and that the next poll
// (without a restart) reads again.
func TestFaultsRecover(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name      string
		framing   modbussim.Framing
		transport modbus.Transport
		inject    func(s *modbussim.Server)
		result    string
	}{
		{"late reply", modbussim.TCP, modbus.TCP, func(s *modbussim.Server) { s.DelayNext(1, 2*timeout) }, modbus.ResultTimeout},
		{"exception", modbussim.TCP, modbus.TCP, func(s *modbussim.Server) { s.ExceptionNext(1, modbussim.DeviceBusy) }, modbus.ResultException},
		{"reset connection", modbussim.TCP, modbus.TCP, func(s *modbussim.Server) { s.ResetNext(1) }, modbus.ResultReset},
		{"transaction id mismatch", modbussim.TCP, modbus.TCP, func(s *modbussim.Server) { s.WrongTransactionIDNext(1) }, modbus.ResultProtocol},
		{"rtu-over-tcp late reply", modbussim.RTUOverTCP, modbus.RTUOverTCP, func(s *modbussim.Server) { s.DelayNext(1, 2*timeout) }, modbus.ResultTimeout},
		{"rtu-over-tcp exception", modbussim.RTUOverTCP, modbus.RTUOverTCP, func(s *modbussim.Server) { s.ExceptionNext(1, modbussim.DeviceFailure) }, modbus.ResultException},
		{"rtu-over-tcp reset", modbussim.RTUOverTCP, modbus.RTUOverTCP, func(s *modbussim.Server) { s.ResetNext(1) }, modbus.ResultReset},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, addr := startSim(t, tc.framing, modbussim.XYMD02)
			p, reg := newPoller(t, tc.transport, addr, timeout, modbus.DeviceConfig{ID: "th-1", Profile: "xy-md02"})
			var rec recorder
			ctx := context.Background()
			if p.PollAll(ctx, &rec); len(rec.readings) != 1 {
				t.Fatalf("first poll: %+v %+v", rec.readings, rec.faults)
			}
			rec.take()
			tc.inject(sim)
			p.PollAll(ctx, &rec)
			rd, faults := rec.take()
			var bf *modbus.BusFault
			if len(rd) != 0 || len(faults) != 1 || !errors.As(faults[0].err, &bf) || bf.Result != tc.result {
				t.Fatalf("faulty poll: readings %+v, faults %+v; want one %s bus fault", rd, faults, tc.result)
			}
			// Recovery: within two polls, a reading again.
			recovered := false
			for i := 0; i < 2 && !recovered; i++ {
				p.PollAll(ctx, &rec)
				rd, _ := rec.take()
				recovered = len(rd) == 1 && rd[0].values["room_temp_c"] == 23.5
			}
			if !recovered {
				t.Fatal("no reading within two polls after the fault")
			}
			if got := testutil.ToFloat64(mustCounter(t, reg, "eldercare_gateway_modbus_polls_total", map[string]string{"device": "th-1", "result": tc.result})); got != 1 {
				t.Errorf("polls_total{result=%s} = %v, want 1", tc.result, got)
			}
		})
	}
}

// TestRunRecoversWithoutRestart runs the poller on its schedule and throws
// every fault at it in turn; readings keep coming.
func TestRunRecoversWithoutRestart(t *testing.T) {
	t.Parallel()
	sim, addr := startSim(t, modbussim.TCP, modbussim.XYMD02)
	dir := t.TempDir()
	profile := dir + "/fast.yaml"
	writeFastProfile(t, profile, "100ms")
	p, _ := newPoller(t, modbus.TCP, addr, 200*time.Millisecond, modbus.DeviceConfig{ID: "th-1", Profile: profile})
	var rec recorder
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, &rec) }()
	waitReadings := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			rec.mu.Lock()
			n := len(rec.readings)
			rec.mu.Unlock()
			if n >= 2 {
				rec.mu.Lock()
				rec.readings = nil
				rec.mu.Unlock()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: no readings", what)
	}
	waitReadings("start")
	for name, inject := range map[string]func(){
		"delay":     func() { sim.DelayNext(1, 500*time.Millisecond) },
		"exception": func() { sim.ExceptionNext(1, modbussim.DeviceBusy) },
		"reset":     func() { sim.ResetNext(1) },
		"txid":      func() { sim.WrongTransactionIDNext(1) },
	} {
		inject()
		waitReadings(name)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_, faults := rec.take()
	if len(faults) != 4 {
		t.Errorf("%d faults seen, want 4 (one per fault injected): %v", len(faults), faults)
	}
}

func writeFastProfile(t testing.TB, path, interval string) {
	t.Helper()
	b, err := modbus.ShippedBytes("xy-md02")
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(replaceOnce(string(b), "poll_interval: 10s", "poll_interval: "+interval))
	if err := writeFile(path, b); err != nil {
		t.Fatal(err)
	}
}

// TestOutOfRangeNotPublished: a CO2 register at 0xFFFF on the wire is a
// sensor fault, counted, and not published (the S8's reading carries only
// its ABC period, read from its own register).
func TestOutOfRangeNotPublished(t *testing.T) {
	t.Parallel()
	sim, addr := startSim(t, modbussim.TCP, modbussim.SenseairS8, modbussim.SDM120)
	p, reg := newPoller(t, modbus.TCP, addr, time.Second,
		modbus.DeviceConfig{ID: "co2-1", Profile: "senseair-s8", Slave: 1},
		modbus.DeviceConfig{ID: "em-1", Profile: "sdm120", Slave: 2})
	sim.SetRegister(1, modbussim.InputRegisterTable, 0x0003, 0xFFFF)
	sim.SetRegister(2, modbussim.InputRegisterTable, 0x0000, 0x7FC0) // voltage NaN
	sim.SetRegister(2, modbussim.InputRegisterTable, 0x0001, 0x0000)
	var rec recorder
	p.PollAll(context.Background(), &rec)
	rd, faults := rec.take()
	if len(rd) != 2 || rd[0].device != "co2-1" || rd[1].device != "em-1" {
		t.Fatalf("readings %+v: want co2-1's and em-1's", rd)
	}
	if _, ok := rd[0].values["co2_ppm"]; ok || rd[0].values["abc_period_h"] != 180 {
		t.Errorf("co2-1 values %v: want abc_period_h 180 without co2_ppm", rd[0].values)
	}
	rd = rd[1:]
	if _, ok := rd[0].values["voltage_v"]; ok || len(rd[0].values) != 9 {
		t.Errorf("em-1 values %v: want 9 without voltage_v", rd[0].values)
	}
	reasons := map[string]string{}
	for _, f := range faults {
		var sf *modbus.SensorFault
		if !errors.As(f.err, &sf) {
			t.Fatalf("fault %v is not a sensor fault", f.err)
		}
		reasons[f.device] = sf.Reason
	}
	if reasons["co2-1"] != modbus.ReasonRange || reasons["em-1"] != modbus.ReasonNaN {
		t.Errorf("fault reasons %v", reasons)
	}
	for _, c := range []struct{ dev, reason string }{{"co2-1", "range"}, {"em-1", "nan"}} {
		if got := testutil.ToFloat64(mustCounter(t, reg, "eldercare_gateway_modbus_sensor_faults_total", map[string]string{"device": c.dev, "reason": c.reason})); got != 1 {
			t.Errorf("sensor_faults_total{%s,%s} = %v", c.dev, c.reason, got)
		}
	}
}

// TestPollsSerializedPerBus: three devices polled every 100 ms on one bus;
// the simulator (10 ms per reply) never sees two requests at once.
func TestPollsSerializedPerBus(t *testing.T) {
	t.Parallel()
	sim, addr := startSim(t, modbussim.TCP, modbussim.XYMD02, modbussim.XYMD02, modbussim.XYMD02)
	sim.SetServiceTime(10 * time.Millisecond)
	profile := t.TempDir() + "/fast.yaml"
	writeFastProfile(t, profile, "100ms")
	p, _ := newPoller(t, modbus.TCP, addr, time.Second,
		modbus.DeviceConfig{ID: "th-1", Profile: profile, Slave: 1},
		modbus.DeviceConfig{ID: "th-2", Profile: profile, Slave: 2},
		modbus.DeviceConfig{ID: "th-3", Profile: profile, Slave: 3})
	var rec recorder
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := p.Run(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	st := sim.Stats()
	rd, faults := rec.take()
	if st.Requests < 20 || len(rd) < 20 {
		t.Fatalf("only %d requests, %d readings (faults %v)", st.Requests, len(rd), faults)
	}
	if st.MaxConcurrent != 1 {
		t.Errorf("the server saw %d requests at once; polls on one bus must be serialized", st.MaxConcurrent)
	}
}

// TestSimulatorCountsConcurrency shows that the serialization test can
// fail: three buses to the same server do overlap.
func TestSimulatorCountsConcurrency(t *testing.T) {
	t.Parallel()
	sim, addr := startSim(t, modbussim.TCP, modbussim.XYMD02, modbussim.XYMD02, modbussim.XYMD02)
	sim.SetServiceTime(50 * time.Millisecond)
	var buses []modbus.BusConfig
	for i := 1; i <= 3; i++ {
		buses = append(buses, modbus.BusConfig{Transport: modbus.TCP, Address: addr, Devices: []modbus.DeviceConfig{{ID: "th-" + string(rune('0'+i)), Profile: "xy-md02", Slave: i}}})
	}
	p, err := modbus.New(modbus.Config{Buses: buses}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	var rec recorder
	p.Run(ctx, &rec)
	if st := sim.Stats(); st.MaxConcurrent < 2 {
		t.Errorf("three buses: max concurrent %d, want > 1", st.MaxConcurrent)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	c := modbus.Config{Buses: []modbus.BusConfig{
		{Transport: "udp", Devices: []modbus.DeviceConfig{{ID: "a b", Profile: ""}}},
		{Transport: modbus.RTU, Serial: modbus.SerialConfig{Parity: "X"}, Devices: []modbus.DeviceConfig{{ID: "x", Profile: "xy-md02", Slave: 1}, {ID: "y", Profile: "xy-md02", Slave: 1}}},
	}}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"transport \"udp\"", "device \"a b\"", "no profile", "serial port", "parity \"X\"", "share slave id 1"} {
		if !contains(err.Error(), w) {
			t.Errorf("%q missing from %v", w, err)
		}
	}
	if _, err := modbus.New(modbus.Config{Buses: []modbus.BusConfig{{Transport: modbus.TCP, Address: "x:1", Devices: []modbus.DeviceConfig{{ID: "d", Profile: "nope"}}}}}, nil, nil); err == nil {
		t.Error("unknown profile accepted")
	}
}
