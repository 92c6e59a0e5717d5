package gateway

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseFile(t *testing.T) {
	b, err := os.ReadFile("testdata/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ParseFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if f.ID != "gw-7" || f.Site != "home-7" || len(f.Devices) != 2 || f.Devices[1].Interval != 30*time.Second {
		t.Errorf("gateway part: %+v", f)
	}
	if len(f.Modbus.Buses) != 2 || f.Modbus.Buses[0].Timeout != time.Second || f.Modbus.Buses[1].Serial.Port != "/dev/ttyUSB0" ||
		len(f.Modbus.Buses[0].Devices) != 2 || f.Modbus.Buses[1].Devices[0].Slave != 3 {
		t.Errorf("modbus part: %+v", f.Modbus)
	}
	if f.Zigbee.MQTT != "tcp://127.0.0.1:1883" || f.Zigbee.Devices[0].Device != "fr-7" || f.Zigbee.Devices[0].Kind != "fall_detector" {
		t.Errorf("zigbee part: %+v", f.Zigbee)
	}

	bad := []struct{ name, yaml, want string }{
		{"empty", "", "empty file"},
		{"unknown key", "id: gw-1\nsite: s\nsid: x\n", "field sid not found"},
		{"no id", "site: s\n", "field id: required"},
		{"bad site", "id: gw-1\nsite: a/b\n", "field site: charset"},
		{"bad kind", "id: gw-1\nsite: s\ndevices: [{id: d, kind: toaster}]\n", "toaster"},
		{"bad interval", "id: gw-1\nsite: s\ndevices: [{id: d, interval: soon}]\n", "soon"},
		{"modbus without buses", "id: gw-1\nsite: s\nmodbus: {}\n", "without buses"},
		{"zigbee without broker", "id: gw-1\nsite: s\nzigbee2mqtt: {base_topic: z}\n", "zigbee2mqtt.mqtt"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func FuzzParseFile(f *testing.F) {
	b, _ := os.ReadFile("testdata/gateway.yaml")
	f.Add(b)
	f.Add([]byte("id: gw-1\nsite: s\n"))
	f.Add([]byte("id: [\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseFile(bytes.NewReader(b))
		if err != nil {
			return
		}
		if c.ID == "" || c.Site == "" {
			t.Fatalf("accepted a file without id or site: %+v", c)
		}
	})
}
