package gateway

import (
	"errors"
	"fmt"
	"io"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/modbus"
)

// File is the gateway's YAML configuration file (eldercare gateway
// --gateway-config): who the gateway is and which devices its sources
// reach. Unknown keys are an error. See docs/gateway.md for an example.
type File struct {
	// ID is the gateway's device id; Site its site (one topic level each).
	ID   string `yaml:"id"`
	Site string `yaml:"site"`
	// Devices lists devices with a kind or expected interval that the
	// sections below do not give (event-only devices, overrides).
	Devices []FileDevice `yaml:"devices"`
	// Modbus buses, polled by device/modbus; nil = none.
	Modbus *FileModbus `yaml:"modbus"`
	// Zigbee is the zigbee2mqtt source; nil = none.
	Zigbee *FileZigbee `yaml:"zigbee2mqtt"`
	// Accel is the source for wristbands that stream raw acceleration
	// (AccelSource); nil = none.
	Accel *FileAccel `yaml:"accel"`
}

// FileDevice is one entry of File.Devices.
type FileDevice struct {
	ID   string      `yaml:"id"`
	Kind device.Kind `yaml:"kind"`
	// Interval is the expected time between readings (e.g. 30s); 0 =
	// event-only, never timed out.
	Interval time.Duration `yaml:"interval"`
}

// FileModbus is the modbus section: buses and the devices on them, each
// in device/modbus's own terms (modbus.BusConfig carries the yaml tags).
type FileModbus struct {
	Buses []modbus.BusConfig `yaml:"buses"`
}

// FileZigbee is the zigbee2mqtt section, in the terms of
// device/gateway/zigbee.Config.
type FileZigbee struct {
	MQTT        string `yaml:"mqtt"`
	BaseTopic   string `yaml:"base_topic"`
	ClientID    string `yaml:"client_id"`
	MappingFile string `yaml:"mapping_file"`
	Devices     []struct {
		FriendlyName string      `yaml:"friendly_name"`
		Device       string      `yaml:"device"`
		Kind         device.Kind `yaml:"kind"`
		Model        string      `yaml:"model"`
		Location     string      `yaml:"location"`
	} `yaml:"devices"`
}

// ParseFile decodes a gateway configuration file strictly (unknown keys are
// errors) and checks what belongs to the gateway: id, site and the devices
// list. The modbus and zigbee2mqtt sections are checked by their packages.
// Errors name the line (YAML) or the field.
func ParseFile(r io.Reader) (*File, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("gateway config: empty file")
		}
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	var errs []error
	if err := device.ValidateID("id", f.ID); err != nil {
		errs = append(errs, err)
	}
	if err := device.ValidateID("site", f.Site); err != nil {
		errs = append(errs, err)
	}
	for i, d := range f.Devices {
		if err := device.ValidateID(fmt.Sprintf("devices[%d].id", i), d.ID); err != nil {
			errs = append(errs, err)
		}
		if d.Kind != "" && !d.Kind.Valid() {
			errs = append(errs, fmt.Errorf("devices[%d].kind: %q is not a known kind", i, d.Kind))
		}
		if d.Interval < 0 {
			errs = append(errs, fmt.Errorf("devices[%d].interval: %s is negative", i, d.Interval))
		}
	}
	if f.Modbus != nil && len(f.Modbus.Buses) == 0 {
		errs = append(errs, errors.New("modbus: section without buses"))
	}
	if f.Zigbee != nil && f.Zigbee.MQTT == "" {
		errs = append(errs, errors.New("zigbee2mqtt.mqtt: the URL of the zigbee2mqtt broker is required"))
	}
	if f.Accel != nil {
		errs = append(errs, f.Accel.validate())
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	return &f, nil
}
