package alerting

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// fakeMsg is a paho.Message for the lane tests.
type fakeMsg struct {
	topic   string
	payload []byte
}

func (m fakeMsg) Duplicate() bool   { return false }
func (m fakeMsg) Qos() byte         { return 1 }
func (m fakeMsg) Retained() bool    { return false }
func (m fakeMsg) Topic() string     { return m.topic }
func (m fakeMsg) MessageID() uint16 { return 0 }
func (m fakeMsg) Payload() []byte   { return m.payload }
func (m fakeMsg) Ack()              {}

// TestLanesNeverBlock: with 200,000 readings queued and nobody taking
// them (a normal lane stuck on the store), pushing never blocks (paho's
// router keeps going) and a fall pushed after them is taken at once by the
// urgent lane, ahead of every reading, in arrival order among urgent
// messages.
func TestLanesNeverBlock(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		l := newLanes()
		for i := range 200000 {
			topic := fmt.Sprintf("eldercare/v1/demo/vm-%d/telemetry", i%100)
			l.push(fakeMsg{topic: topic, payload: []byte(`{"values":{"hr_bpm":70}}`)}, urgentEvent(topic, nil))
		}
		for _, dev := range []string{"fd-1", "sos-1"} {
			topic := "eldercare/v1/demo/" + dev + "/event"
			payload := []byte(`{"type":"fall"}`)
			if dev == "sos-1" {
				payload = []byte(`{"type":"sos"}`)
			}
			l.push(fakeMsg{topic: topic, payload: payload}, urgentEvent(topic, payload))
		}
		if l.len(false) != 200000 || l.len(true) != 2 || !l.urgentActive() {
			t.Fatalf("lanes normal %d urgent %d active %v", l.len(false), l.len(true), l.urgentActive())
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		start := time.Now()
		for _, want := range []string{"fd-1", "sos-1"} {
			msg, ok := l.next(ctx, true)
			if !ok || msg.Topic() != "eldercare/v1/demo/"+want+"/event" {
				t.Fatalf("urgent lane gave %v %v, want %s", msg, ok, want)
			}
			l.doneUrgent()
		}
		if time.Since(start) != 0 {
			t.Errorf("the urgent lane waited %s", time.Since(start))
		}
		if l.urgentActive() {
			t.Error("urgent lane still active after both were handled")
		}
		// An empty lane waits for the next push, and ends with ctx.
		got := make(chan string, 1)
		go func() {
			msg, ok := l.next(ctx, true)
			if ok {
				got <- msg.Topic()
			}
			close(got)
		}()
		synctest.Wait()
		l.push(fakeMsg{topic: "eldercare/v1/demo/fd-2/event", payload: []byte(`{"type":"fall"}`)}, true)
		if tp := <-got; tp != "eldercare/v1/demo/fd-2/event" {
			t.Errorf("waiting urgent lane got %q", tp)
		}
		msg, ok := l.next(ctx, false)
		if !ok || msg.Topic() != "eldercare/v1/demo/vm-0/telemetry" {
			t.Errorf("normal lane gave %v, want the oldest reading", msg)
		}
	})
}
