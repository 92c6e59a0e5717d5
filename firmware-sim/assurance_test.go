package firmwaresim

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/internal/testenv"
)

// A simulated pull cord (call_button) answers call_acknowledged on its own
// cmd topic: accepted, and its station shows "help is coming"; a valve
// action is refused unsupported and shows nothing.
func TestPullCordHelpIsComing(t *testing.T) {
	t.Parallel()
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	in := subscribe(t, url, root)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	help := &HelpState{}
	done := make(chan error, 1)
	go func() {
		done <- RunKit(ctx, KitConfig{Kind: device.CallButton, Interval: time.Hour, Location: "bathroom", Help: help,
			DeviceConfig: DeviceConfig{MQTTURL: url, Root: root, Site: "home-1", Device: "cord-1", Logger: quietLogger()}})
	}()
	defer func() { cancel(); <-done }()

	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(testenv.ClientID(t, "platform")))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	send := func(id string, a device.Action, params map[string]any) {
		cmd, err := device.NewCommand(id, "cord-1", a, params, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(cmd)
		c.Publish(device.CommandTopic(root, "home-1", "cord-1"), 1, false, b).WaitTimeout(5 * time.Second)
	}
	ackOf := func(id string) *device.CommandAck {
		for _, m := range in.on(device.ChanCommandAck) {
			if a, err := device.DecodeCommandAck(m.payload, device.Limits{}); err == nil && a.ID == id {
				return a
			}
		}
		return nil
	}
	// The cord subscribes after it connected: repeat until it answers.
	testenv.EventuallyTrue(t, waitLimit, "the cord's answer to a valve command", func() bool {
		send("c-valve", device.ActionValveClose, nil)
		time.Sleep(100 * time.Millisecond)
		return ackOf("c-valve") != nil
	})
	if a := ackOf("c-valve"); a.Status != device.AckRefused || a.Reason != device.ReasonUnsupported || help.Coming() {
		t.Fatalf("valve command on a pull cord: %+v, help coming %v", a, help.Coming())
	}
	send("assure-9", device.ActionCallAcknowledged, map[string]any{"alert": 9, "type": "sos", "by": "nurse-li"})
	testenv.EventuallyTrue(t, waitLimit, "the ack of call_acknowledged", func() bool { return ackOf("assure-9") != nil })
	if a := ackOf("assure-9"); a.Status != device.AckAccepted || !help.Coming() || help.Last().Params["by"] != "nurse-li" {
		t.Fatalf("call_acknowledged: ack %+v, help coming %v", a, help.Coming())
	}
}

// TestSOSAwaitHelp: `sim sos --await-help` pressed twice. The platform
// acknowledges the first press only: the wait after the last press is not
// answered by that earlier acknowledgement, so RunSOS fails with ErrNoHelp
// (before the fix it returned nil at once: an unanswered call looked
// answered). Acknowledging the last press ends the wait without error.
func TestSOSAwaitHelp(t *testing.T) {
	t.Parallel()
	url := testenv.EmbeddedBroker(t).URL()
	root := testenv.TopicRoot(t)
	in := subscribe(t, url, root)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(testenv.ClientID(t, "platform")))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	ack := func(dev, id string) {
		cmd, err := device.NewCommand(id, dev, device.ActionCallAcknowledged, map[string]any{"by": "nurse"}, time.Now(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(cmd)
		c.Publish(device.CommandTopic(root, "home-1", dev), 1, false, b).WaitTimeout(5 * time.Second)
	}
	events := func(dev string) int {
		n := 0
		for _, m := range in.on(device.ChanEvent) {
			if e, err := device.DecodeEvent(m.payload, time.Now(), device.Limits{}); err == nil && e.Device == dev {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		dev      string
		ackPress int // the press acknowledged
		noHelp   bool
	}{{"sos-early", 1, true}, {"sos-last", 2, false}} {
		done := make(chan error, 1)
		go func() {
			done <- RunSOS(t.Context(), SOSConfig{DeviceConfig: DeviceConfig{MQTTURL: url, Root: root, Site: "home-1", Device: c.dev, Logger: quietLogger()},
				Presses: 2, Interval: 2 * time.Second, AwaitHelp: 3 * time.Second})
		}()
		testenv.EventuallyTrue(t, waitLimit, "press "+strconv.Itoa(c.ackPress)+" of "+c.dev, func() bool { return events(c.dev) >= c.ackPress })
		ack(c.dev, "assure-"+c.dev)
		select {
		case err := <-done:
			if got := errors.Is(err, ErrNoHelp); got != c.noHelp {
				t.Errorf("%s (press %d acknowledged): RunSOS = %v, want ErrNoHelp %v", c.dev, c.ackPress, err, c.noHelp)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: RunSOS did not end", c.dev)
		}
	}
}
