package broker_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/benchload"
	"github.com/eldercare-iot/eldercare/internal/broker"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// BenchmarkStoreQoS1 publishes b.N QoS 1 single readings from one client
// (benchload.Publish: 1000 in flight, as eldercare-bench ingest) through
// the embedded broker with its store to one persistent QoS 1 subscriber
// (benchload.Counter, which acknowledges each message), as "eldercare up"
// carries telemetry to ingest. ns/op is the wall time per message; cpu-us/op
// is this process's CPU per message (broker, store, publisher and
// subscriber together), the figure that matters on a loaded machine.
func BenchmarkStoreQoS1(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			root := testenv.TopicRoot(b)
			br, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", Logger: quietLog, StorePath: filepath.Join(b.TempDir(), "store.db"),
				StoreNoSync: !fsync, Root: root})
			if err != nil {
				b.Fatal(err)
			}
			defer br.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var got atomic.Int64
			sub, err := benchload.Counter(ctx, br.URL(), testenv.ClientID(b, "sub"), root+"/v1/+/+/telemetry", &got)
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Disconnect(0)
			topics := make([]string, b.N)
			payloads := make([][]byte, b.N)
			for i := range b.N {
				topics[i] = fmt.Sprintf("%s/v1/s1/dev-%d/telemetry", root, i%1000)
				payloads[i] = fmt.Appendf(nil, `{"ts":%d,"readings":{"heart_rate":%d}}`, 1_700_000_000_000+i, 60+i%40)
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			var sent atomic.Int64
			if err := benchload.Publish(ctx, br.URL(), testenv.ClientID(b, "pub"), topics, payloads, 1000, &sent); err != nil {
				b.Fatal(err)
			}
			for got.Load() < int64(b.N) {
				if ctx.Err() != nil {
					b.Fatalf("%d of %d messages arrived", got.Load(), b.N)
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
