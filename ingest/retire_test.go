package ingest

import (
	"syscall"
	"testing"
	"time"

	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// term stops the child with SIGTERM (a replica retired on purpose) and
// waits for it to exit.
func (c *child) term() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
	c.cmd = nil
}

// TestTwoReplicasOneRetired runs two replicas on one shared subscription of
// a test-owned Mosquitto (persistent sessions, as always) and stops one
// with SIGTERM mid-burst, for good: it leaves the group before it
// disconnects, so the broker sends its share to the other replica and
// every reading is stored within seconds, not when the stopped replica
// comes back. (Without leaving, Mosquitto 2.0 queues part of what is
// published after the stop in the stopped replica's session: 250 of 2,000
// in one run.)
func TestTwoReplicasOneRetired(t *testing.T) {
	t.Parallel()
	influxURL, db := testInflux(t, false) // the children create the database
	mqttURL := testenv.OwnMosquitto(t)
	root := testenv.TopicRoot(t)
	cfgA := childConfig(mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest-a"))
	cfgA.LeaveGroupOnStop = true
	a := startChild(t, cfgA)
	cfgB := childConfig(mqttURL, influxURL, db, root, testenv.ClientID(t, "ingest-b"))
	cfgB.LeaveGroupOnStop = true
	startChild(t, cfgB)
	pub := newLoadPublisher(t, mqttURL, root, 10_000, 1)
	const n = 4000
	stopped := make(chan struct{})
	pub.publish(0, n/2, func(i int) {
		if i == n/4 {
			t.Logf("stopping replica a (SIGTERM) before message %d", i)
			go func() { a.term(); close(stopped) }()
		}
	})
	<-stopped
	// The second half is published after replica a has gone: its share
	// must reach replica b.
	pub.publish(n/2, n, nil)
	waitStored(t, influxURL, db+"/autogen", n, 30*time.Second)
}
