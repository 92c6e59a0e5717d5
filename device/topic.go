// Package device defines wire protocol v1 between devices, gateways and the
// platform: the MQTT topic layout, the JSON payloads and their validation,
// and the kinds of device the platform knows. It is the leaf of the module
// and imports only the standard library.
//
// The full specification, with examples, is docs/protocol.md.
package device

import (
	"errors"
	"fmt"
	"strings"
)

// Version is the protocol version carried in every payload ("v") and in the
// topic ("v1").
const Version = 1

// DefaultRoot is the first topic level used when no root is configured.
const DefaultRoot = "eldercare"

// Channel is the last topic level: what kind of message a topic carries.
type Channel string

// The channels of protocol v1.
const (
	// ChanTelemetry carries readings (one or a batch). Device -> platform, QoS 1.
	ChanTelemetry Channel = "telemetry"
	// ChanEvent carries discrete events (fall, SOS, bed exit, meal). Device ->
	// platform, QoS 1.
	ChanEvent Channel = "event"
	// ChanStatus carries the device's state (online, offline, unknown). Retained,
	// QoS 1. Also the topic of a device's last will.
	ChanStatus Channel = "status"
	// ChanCommand is the downlink: platform -> device, QoS 1, not retained.
	ChanCommand Channel = "cmd"
	// ChanCommandAck carries a device's answer to a command. Device -> platform,
	// QoS 1.
	ChanCommandAck Channel = "cmd/ack"
)

// Topic addresses one channel of one device at one site:
//
//	{root}/v1/{site}/{device}/{channel}
//
// for example "eldercare/v1/demo-station/vm-101/telemetry". Root may contain
// slashes ("tenant-a/eldercare"); site and device are single levels of
// [A-Za-z0-9_.-], 1-64 characters.
type Topic struct {
	Root    string
	Site    string
	Device  string
	Channel Channel
}

// String renders the topic name. It does not validate; see Validate.
func (t Topic) String() string {
	root := t.Root
	if root == "" {
		root = DefaultRoot
	}
	return root + "/v1/" + t.Site + "/" + t.Device + "/" + string(t.Channel)
}

// Validate reports whether every level of t is well formed.
func (t Topic) Validate() error {
	var errs []error
	if err := ValidateRoot(t.Root); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateID("site", t.Site); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateID("device", t.Device); err != nil {
		errs = append(errs, err)
	}
	switch t.Channel {
	case ChanTelemetry, ChanEvent, ChanStatus, ChanCommand, ChanCommandAck:
	default:
		errs = append(errs, &ValidationError{Field: "channel", Rule: "one_of", Detail: fmt.Sprintf("%q is not telemetry, event, status, cmd or cmd/ack", t.Channel)})
	}
	return errors.Join(errs...)
}

// ParseTopic splits a topic name under root into its parts. It returns a
// *ValidationError when the name is not a v1 topic under root.
func ParseTopic(root, name string) (Topic, error) {
	if root == "" {
		root = DefaultRoot
	}
	rest, ok := strings.CutPrefix(name, root) // root + "/v1/" without building it per message
	if ok {
		rest, ok = strings.CutPrefix(rest, "/v1/")
	}
	if !ok {
		return Topic{}, &ValidationError{Field: "topic", Rule: "prefix", Detail: fmt.Sprintf("%q does not start with %q", name, root+"/v1/")}
	}
	site, rest, ok1 := strings.Cut(rest, "/")
	dev, ch, ok2 := strings.Cut(rest, "/")
	if !ok1 || !ok2 {
		return Topic{}, &ValidationError{Field: "topic", Rule: "levels", Detail: fmt.Sprintf("%q is not {root}/v1/{site}/{device}/{channel}", name)}
	}
	t := Topic{Root: root, Site: site, Device: dev, Channel: Channel(ch)}
	if err := t.Validate(); err != nil {
		return Topic{}, err
	}
	return t, nil
}

// Subscription returns the topic filter for one channel of every device of
// every site under root, e.g. "eldercare/v1/+/+/telemetry".
func Subscription(root string, ch Channel) string {
	if root == "" {
		root = DefaultRoot
	}
	return root + "/v1/+/+/" + string(ch)
}

// SharedSubscription returns the MQTT v5 / Mosquitto shared-subscription
// filter "$share/{group}/{filter}", which the broker balances over every
// client that subscribes with the same group.
func SharedSubscription(group, filter string) string {
	return "$share/" + group + "/" + filter
}

// ValidateRoot checks a topic root: one or more levels of [A-Za-z0-9_.-],
// no wildcards, no leading or trailing slash, at most 128 characters.
func ValidateRoot(root string) error {
	if root == "" {
		return nil // DefaultRoot
	}
	if len(root) > 128 {
		return &ValidationError{Field: "root", Rule: "max_len", Detail: "longer than 128 characters"}
	}
	for level := range strings.SplitSeq(root, "/") {
		if err := validLevel(level); err != "" {
			return &ValidationError{Field: "root", Rule: "charset", Detail: fmt.Sprintf("%q: %s", root, err)}
		}
	}
	return nil
}

// ValidateID checks an identifier used as one topic level (site, device):
// 1-64 characters of [A-Za-z0-9_.-]. field names the field in the error.
func ValidateID(field, id string) error {
	if id == "" {
		return &ValidationError{Field: field, Rule: "required"}
	}
	if len(id) > 64 {
		return &ValidationError{Field: field, Rule: "max_len", Detail: fmt.Sprintf("%d characters, at most 64", len(id))}
	}
	if err := validLevel(id); err != "" {
		return &ValidationError{Field: field, Rule: "charset", Detail: fmt.Sprintf("%q: %s", id, err)}
	}
	return nil
}

func validLevel(s string) string {
	if s == "" {
		return "empty topic level"
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-', r == '.':
		default:
			return fmt.Sprintf("character %q is not one of [A-Za-z0-9_.-]", r)
		}
	}
	return ""
}
