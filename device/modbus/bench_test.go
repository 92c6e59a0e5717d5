package modbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/device/modbus"
	"github.com/eldercare-iot/eldercare/firmware-sim/modbussim"
)

// BenchmarkPoll polls five SDM120 meters over Modbus TCP on loopback: 50
// float32 values in 100 registers per op, i.e. one op is one second of
// polling at 100 registers/s. The simulator runs in the same process, so
// ns/op and allocations are an upper bound for the poller alone.
func BenchmarkPoll(b *testing.B) {
	sim, addr := startSim(b, modbussim.TCP, modbussim.SDM120, modbussim.SDM120, modbussim.SDM120, modbussim.SDM120, modbussim.SDM120)
	var devs []modbus.DeviceConfig
	for i := 1; i <= 5; i++ {
		devs = append(devs, modbus.DeviceConfig{ID: "em-" + string(rune('0'+i)), Profile: "sdm120", Slave: i})
	}
	p, _ := newPoller(b, modbus.TCP, addr, time.Second, devs...)
	sink := &countSink{}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := p.PollAll(ctx, sink); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if sink.faults != 0 || sink.values != 50*b.N {
		b.Fatalf("%d faults, %d values for %d ops", sink.faults, sink.values, b.N)
	}
	b.ReportMetric(100, "registers/op")
	b.ReportMetric(float64(sim.Stats().Requests)/float64(b.N), "requests/op")
}

type countSink struct{ values, faults int }

func (c *countSink) Reading(_ context.Context, _ string, _ time.Time, v map[string]float64) error {
	c.values += len(v)
	return nil
}
func (c *countSink) Fault(string, error) { c.faults++ }
