package modbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	gmodbus "github.com/goburrow/modbus"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/eldercare-iot/eldercare/device"
)

// Sink receives what a Poller reads. The gateway passes its own (spool and
// health); tests pass a recorder.
type Sink interface {
	// Reading is one poll's good values of one device, by reading field
	// name (protocol v1 names with unit suffixes), stamped with the time
	// the poll started.
	Reading(ctx context.Context, deviceID string, ts time.Time, values map[string]float64) error
	// Fault reports a sensor fault (*SensorFault) or a bus fault
	// (*BusFault): counted and reported, never published as a reading.
	Fault(deviceID string, err error)
}

// Transport is how a bus reaches its slaves.
type Transport string

// Transports.
const (
	TCP        Transport = "tcp"          // Modbus TCP (MBAP header), Address host:port
	RTU        Transport = "rtu"          // Modbus RTU on a serial line, Serial.Port
	RTUOverTCP Transport = "rtu-over-tcp" // RTU frames over TCP (serial-to-Ethernet converters), Address host:port
)

// SerialConfig is an RS485/RS232 line for Transport RTU. The yaml tags
// are the gateway file's (docs/gateway.md).
type SerialConfig struct {
	Port     string `yaml:"port"`      // device path, e.g. /dev/ttyUSB0
	BaudRate int    `yaml:"baud_rate"` // bits/s; default 9600 (XY-MD02 and Senseair S8 factory setting)
	DataBits int    `yaml:"data_bits"` // default 8
	Parity   string `yaml:"parity"`    // N, E or O; default N
	StopBits int    `yaml:"stop_bits"` // 1 or 2; default 1
}

// BusConfig is one bus: one connection (or serial line) and the devices on
// it. Polls of the devices on one bus never overlap. It is also the shape
// of one entry of the gateway file's modbus.buses list (yaml tags;
// device/gateway.FileModbus), so a bus is described in one place.
type BusConfig struct {
	Name      string       `yaml:"name"`      // for logs and faults; default the address or port
	Transport Transport    `yaml:"transport"` // tcp, rtu or rtu-over-tcp
	Address   string       `yaml:"address"`   // host:port for TCP and RTUOverTCP
	Serial    SerialConfig `yaml:"serial"`
	// Timeout is the longest wait for a reply (and for a TCP connect);
	// default 1s. A reply later than this is a timeout fault. In YAML a
	// Go duration, e.g. 1s or 500ms.
	Timeout time.Duration  `yaml:"timeout"`
	Devices []DeviceConfig `yaml:"devices"`
}

// DeviceConfig is one slave on a bus.
type DeviceConfig struct {
	ID      string `yaml:"id"`      // device id (protocol v1: 1-64 of [A-Za-z0-9_.-])
	Profile string `yaml:"profile"` // shipped profile name (see Shipped) or path to a YAML profile
	Slave   int    `yaml:"slave"`   // slave (unit) id 1-247; 0: the profile's
}

// Config is the Modbus part of a gateway.
type Config struct {
	Buses []BusConfig
	// Now is the clock that stamps readings; default time.Now.
	Now func() time.Time
}

// Validate reports every problem in c (errors.Join), loading no profile.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Buses) == 0 {
		errs = append(errs, errors.New("modbus: no bus configured"))
	}
	ids := map[string]bool{}
	for i, b := range c.Buses {
		where := fmt.Sprintf("modbus bus %d", i)
		switch b.Transport {
		case TCP, RTUOverTCP:
			if b.Address == "" {
				errs = append(errs, fmt.Errorf("%s: transport %s needs an address host:port", where, b.Transport))
			}
		case RTU:
			if b.Serial.Port == "" {
				errs = append(errs, fmt.Errorf("%s: transport rtu needs a serial port, e.g. /dev/ttyUSB0", where))
			}
			if p := b.Serial.Parity; p != "" && p != "N" && p != "E" && p != "O" {
				errs = append(errs, fmt.Errorf("%s: parity %q; want N, E or O", where, p))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: transport %q; want tcp, rtu or rtu-over-tcp", where, b.Transport))
		}
		if b.Timeout < 0 {
			errs = append(errs, fmt.Errorf("%s: timeout %v is negative", where, b.Timeout))
		}
		if len(b.Devices) == 0 {
			errs = append(errs, fmt.Errorf("%s: no devices", where))
		}
		slaves := map[int]string{}
		for _, d := range b.Devices {
			if err := device.ValidateID("device", d.ID); err != nil {
				errs = append(errs, fmt.Errorf("%s: device %q: %w", where, d.ID, err))
			}
			if ids[d.ID] {
				errs = append(errs, fmt.Errorf("%s: device %s configured twice", where, d.ID))
			}
			ids[d.ID] = true
			if d.Profile == "" {
				errs = append(errs, fmt.Errorf("%s: device %s: no profile", where, d.ID))
			}
			if d.Slave < 0 || d.Slave > 247 {
				errs = append(errs, fmt.Errorf("%s: device %s: slave %d is outside 1-247", where, d.ID, d.Slave))
			} else if other, dup := slaves[d.Slave]; dup && d.Slave != 0 {
				errs = append(errs, fmt.Errorf("%s: devices %s and %s share slave id %d", where, other, d.ID, d.Slave))
			} else {
				slaves[d.Slave] = d.ID
			}
		}
	}
	return errors.Join(errs...)
}

// Poller polls the devices of one or more buses by their profiles and
// hands readings and faults to a Sink.
type Poller struct {
	buses []*bus
	now   func() time.Time
	log   *slog.Logger
	m     *metrics
}

type metrics struct {
	polls        *prometheus.CounterVec
	sensorFaults *prometheus.CounterVec
	seconds      *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eldercare_gateway_modbus_polls_total",
			Help: "Modbus polls of a device by result: ok, timeout, exception, reset, protocol, sink.",
		}, []string{"device", "result"}),
		sensorFaults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eldercare_gateway_modbus_sensor_faults_total",
			Help: "Register values not published: range (outside the profile's plausible range), nan, inf, missing.",
		}, []string{"device", "reason"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eldercare_gateway_modbus_poll_seconds",
			Help:    "Duration of one poll of one device (all its due registers), in seconds.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"device"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.polls, m.sensorFaults, m.seconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register modbus metrics: %w", err)
		}
	}
	return m, nil
}

// bus is one connection and its devices; mu serializes every request on it.
type bus struct {
	name    string
	mu      sync.Mutex
	client  gmodbus.Client
	closer  io.Closer
	slave   func(id uint8)
	devices []*pollDevice
}

// pollDevice is one configured slave with its profile, split into groups
// by poll interval.
type pollDevice struct {
	id      string
	slave   uint8
	profile *Profile
	groups  []*group
}

// group is the registers of one device read at the same interval, and the
// read requests (blocks) that fetch them.
type group struct {
	interval time.Duration
	regs     []Register
	blocks   []block
	next     time.Time
}

// block is one read request.
type block struct {
	fn    Function
	addr  uint16
	count uint16
}

// New loads every device's profile and prepares the buses; it connects
// nothing (connections open on the first poll). Metrics are registered on
// reg (nil: none); log nil discards.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Poller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	p := &Poller{now: cfg.Now, log: log, m: m}
	if p.now == nil {
		p.now = time.Now
	}
	var errs []error
	for _, bc := range cfg.Buses {
		b := newBus(bc)
		for _, dc := range bc.Devices {
			prof, err := LoadProfile(dc.Profile)
			if err != nil {
				errs = append(errs, fmt.Errorf("modbus device %s: %w", dc.ID, err))
				continue
			}
			d := &pollDevice{id: dc.ID, slave: prof.Slave, profile: prof}
			if dc.Slave != 0 {
				d.slave = uint8(dc.Slave)
			}
			d.groups = plan(prof)
			b.devices = append(b.devices, d)
		}
		p.buses = append(p.buses, b)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

func newBus(bc BusConfig) *bus {
	timeout := bc.Timeout
	if timeout == 0 {
		timeout = time.Second
	}
	b := &bus{name: bc.Name}
	switch bc.Transport {
	case TCP:
		h := gmodbus.NewTCPClientHandler(bc.Address)
		h.Timeout = timeout
		h.IdleTimeout = 0 // keep the connection; we close it on faults
		b.client, b.closer, b.slave = gmodbus.NewClient(h), h, func(id uint8) { h.SlaveId = id }
		if b.name == "" {
			b.name = bc.Address
		}
	case RTUOverTCP:
		h := &gmodbus.RTUClientHandler{} // only its RTU packager is used
		t := &rtuOverTCP{address: bc.Address, timeout: timeout}
		b.client, b.closer, b.slave = gmodbus.NewClient2(h, t), t, func(id uint8) { h.SlaveId = id }
		if b.name == "" {
			b.name = bc.Address
		}
	case RTU:
		h := gmodbus.NewRTUClientHandler(bc.Serial.Port)
		h.BaudRate = orDefault(bc.Serial.BaudRate, 9600)
		h.DataBits = orDefault(bc.Serial.DataBits, 8)
		h.StopBits = orDefault(bc.Serial.StopBits, 1)
		h.Parity = bc.Serial.Parity
		if h.Parity == "" {
			h.Parity = "N"
		}
		h.Timeout = timeout
		h.IdleTimeout = 0
		b.client, b.closer, b.slave = gmodbus.NewClient(h), h, func(id uint8) { h.SlaveId = id }
		if b.name == "" {
			b.name = bc.Serial.Port
		}
	}
	return b
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// plan groups a profile's registers by poll interval and merges each
// group's registers into as few reads as the profile's merge_gap and the
// protocol's request limits allow.
func plan(p *Profile) []*group {
	byInterval := map[time.Duration]*group{}
	var groups []*group
	for _, r := range p.Registers {
		g := byInterval[r.PollInterval]
		if g == nil {
			g = &group{interval: r.PollInterval}
			byInterval[r.PollInterval] = g
			groups = append(groups, g)
		}
		g.regs = append(g.regs, r)
	}
	for _, g := range groups {
		g.blocks = blocks(g.regs, p.MergeGap)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].interval < groups[j].interval })
	return groups
}

func blocks(regs []Register, gap int) []block {
	sorted := slices.Clone(regs)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Function != sorted[j].Function {
			return sorted[i].Function < sorted[j].Function
		}
		return sorted[i].Address < sorted[j].Address
	})
	var out []block
	for _, r := range sorted {
		end := int(r.Address) + r.Type.Words() // exclusive
		limit := maxReadRegisters
		if r.Function.bits() {
			limit = maxReadBits
		}
		if n := len(out); n > 0 {
			last := &out[n-1]
			lastEnd := int(last.addr) + int(last.count)
			if last.fn == r.Function && int(r.Address) <= lastEnd+gap && max(end, lastEnd)-int(last.addr) <= limit {
				last.count = uint16(max(end, lastEnd) - int(last.addr))
				continue
			}
		}
		out = append(out, block{fn: r.Function, addr: r.Address, count: uint16(end - int(r.Address))})
	}
	return out
}

// Devices returns the configured device ids with their profiles, bus by bus.
func (p *Poller) Devices() map[string]*Profile {
	out := map[string]*Profile{}
	for _, b := range p.buses {
		for _, d := range b.devices {
			out[d.id] = d.profile
		}
	}
	return out
}

// Run polls every device at its profile's intervals until ctx is
// cancelled, one goroutine per bus, and returns nil then. Faults never stop
// it: a failed poll is reported to sink.Fault, counted, and the connection
// is reopened for the next poll. A Reading the sink refuses is logged and
// counted (result "sink"); polling goes on. A request cannot be cancelled
// mid-flight: Run returns at most one bus timeout after ctx ends.
func (p *Poller) Run(ctx context.Context, sink Sink) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, b := range p.buses {
		g.Go(func() error { return p.runBus(ctx, b, sink) })
	}
	err := g.Wait()
	for _, b := range p.buses {
		b.mu.Lock()
		b.closer.Close()
		b.mu.Unlock()
	}
	return err
}

func (p *Poller) runBus(ctx context.Context, b *bus, sink Sink) error {
	start := p.now()
	for _, d := range b.devices {
		for _, g := range d.groups {
			g.next = start
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		// The device group due first.
		var dueDev *pollDevice
		var due *group
		for _, d := range b.devices {
			for _, g := range d.groups {
				if due == nil || g.next.Before(due.next) {
					dueDev, due = d, g
				}
			}
		}
		if wait := due.next.Sub(p.now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return nil
		}
		p.poll(ctx, b, dueDev, due, sink)
		due.next = due.next.Add(due.interval)
		if now := p.now(); due.next.Before(now) {
			due.next = now.Add(due.interval) // behind: skip, never burst
		}
	}
}

// PollAll polls every register of every device once, now, bus after bus,
// and returns the first sink error. Run is the normal way; PollAll is for
// tests, benchmarks and one-shot tools.
func (p *Poller) PollAll(ctx context.Context, sink Sink) error {
	for _, b := range p.buses {
		for _, d := range b.devices {
			for _, g := range d.groups {
				if err := p.poll(ctx, b, d, g, sink); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// poll reads one group of one device, decodes it and hands the result to
// the sink. It holds the bus for the whole poll.
func (p *Poller) poll(ctx context.Context, b *bus, d *pollDevice, g *group, sink Sink) error {
	ts := p.now()
	t0 := time.Now()
	im, fault := p.read(b, d, g)
	p.m.seconds.WithLabelValues(d.id).Observe(time.Since(t0).Seconds())
	if fault != nil {
		p.m.polls.WithLabelValues(d.id, fault.Result).Inc()
		p.log.Warn("modbus poll failed", "device", d.id, "bus", b.name, "result", fault.Result, "err", fault.Err)
		sink.Fault(d.id, fault)
		return nil
	}
	values, faults := DecodeImage(g.regs, im)
	for _, f := range faults {
		reason := "decode"
		var sf *SensorFault
		if errors.As(f, &sf) {
			reason = sf.Reason
		}
		p.m.sensorFaults.WithLabelValues(d.id, reason).Inc()
		p.log.Warn("modbus sensor fault", "device", d.id, "reason", reason, "err", f)
		sink.Fault(d.id, fmt.Errorf("device %s: %w", d.id, f))
	}
	if len(values) == 0 {
		p.m.polls.WithLabelValues(d.id, ResultOK).Inc()
		return nil
	}
	if err := sink.Reading(ctx, d.id, ts, values); err != nil {
		p.m.polls.WithLabelValues(d.id, ResultSink).Inc()
		p.log.Error("modbus reading refused by the sink", "device", d.id, "err", err)
		return fmt.Errorf("device %s: sink: %w", d.id, err)
	}
	p.m.polls.WithLabelValues(d.id, ResultOK).Inc()
	return nil
}

// read performs the group's read requests under the bus lock.
func (p *Poller) read(b *bus, d *pollDevice, g *group) (Image, *BusFault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	im := Image{}
	for _, blk := range g.blocks {
		b.slave(d.slave)
		var data []byte
		var err error
		switch blk.fn {
		case Coils:
			data, err = b.client.ReadCoils(blk.addr, blk.count)
		case DiscreteInputs:
			data, err = b.client.ReadDiscreteInputs(blk.addr, blk.count)
		case HoldingRegisters:
			data, err = b.client.ReadHoldingRegisters(blk.addr, blk.count)
		case InputRegisters:
			data, err = b.client.ReadInputRegisters(blk.addr, blk.count)
		}
		if err == nil {
			err = fill(&im, blk, data)
		}
		if err != nil {
			f := &BusFault{Bus: b.name, Slave: d.slave, Function: blk.fn, Address: blk.addr, Result: classify(err), Err: err}
			if f.Result != ResultException {
				// A late reply, a reset or a stray frame may still be
				// on the wire: start the next poll on a new connection.
				b.closer.Close()
			}
			return Image{}, f
		}
	}
	return im, nil
}

// fill stores a read's reply data into the image.
func fill(im *Image, blk block, data []byte) error {
	if blk.fn.bits() {
		if len(data) < (int(blk.count)+7)/8 {
			return fmt.Errorf("modbus: %d bytes for %d bits", len(data), blk.count)
		}
		tab := &im.Coils
		if blk.fn == DiscreteInputs {
			tab = &im.DiscreteInputs
		}
		if *tab == nil {
			*tab = map[uint16]bool{}
		}
		for i := range int(blk.count) {
			(*tab)[blk.addr+uint16(i)] = data[i/8]&(1<<(i%8)) != 0
		}
		return nil
	}
	if len(data) != 2*int(blk.count) {
		return fmt.Errorf("modbus: %d bytes for %d registers", len(data), blk.count)
	}
	tab := &im.Input
	if blk.fn == HoldingRegisters {
		tab = &im.Holding
	}
	if *tab == nil {
		*tab = map[uint16]uint16{}
	}
	for i := range int(blk.count) {
		(*tab)[blk.addr+uint16(i)] = uint16(data[2*i])<<8 | uint16(data[2*i+1])
	}
	return nil
}
