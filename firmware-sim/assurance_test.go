package firmwaresim

import (
	"context"
	"encoding/json"
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
	url := testenv.Mosquitto(t)
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
	waitFor(t, "the cord's answer to a valve command", func() bool {
		send("c-valve", device.ActionValveClose, nil)
		time.Sleep(100 * time.Millisecond)
		return ackOf("c-valve") != nil
	})
	if a := ackOf("c-valve"); a.Status != device.AckRefused || a.Reason != device.ReasonUnsupported || help.Coming() {
		t.Fatalf("valve command on a pull cord: %+v, help coming %v", a, help.Coming())
	}
	send("assure-9", device.ActionCallAcknowledged, map[string]any{"alert": 9, "type": "sos", "by": "nurse-li"})
	waitFor(t, "the ack of call_acknowledged", func() bool { return ackOf("assure-9") != nil })
	if a := ackOf("assure-9"); a.Status != device.AckAccepted || !help.Coming() || help.Last().Params["by"] != "nurse-li" {
		t.Fatalf("call_acknowledged: ack %+v, help coming %v", a, help.Coming())
	}
}
