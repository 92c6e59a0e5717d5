package broker

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/eldercare-iot/eldercare/device"
)

// MosquittoUser is an extra user of an exported Mosquitto configuration,
// such as the platform's internal account: PasswordHash in the "$7$" format,
// and full read and write access under the topic root.
type MosquittoUser struct {
	Username     string
	PasswordHash string
}

// MosquittoFiles renders the same users and topic ACL that Auth enforces
// as a Mosquitto 2.0 password file (password_file, "user:$7$..." lines, the
// format mosquitto_passwd writes) and ACL file (acl_file, "user" and
// "topic read|write|readwrite" lines; mosquitto.conf(5)). Accounts become
// device users limited to their own topics; full users get "topic
// readwrite {root}/#". Usernames with ':' or whitespace, and topics with
// wildcards, are refused: both would change the meaning of the files.
func MosquittoFiles(root string, accounts []Account, full []MosquittoUser) (passwd, acl []byte, err error) {
	if err := device.ValidateRoot(root); err != nil {
		return nil, nil, err
	}
	if root == "" {
		root = device.DefaultRoot
	}
	var pw, ac bytes.Buffer
	ac.WriteString("# Written by eldercare export-mosquitto: gateways publish only for their own site and devices.\n")
	ac.WriteString("# Clients without a user line below have no access.\n")
	var errs []error
	seen := map[string]bool{}
	user := func(name, hash string) bool {
		switch {
		case name == "" || strings.ContainsAny(name, ": \t\r\n") || strings.ContainsAny(name, "+#"):
			errs = append(errs, fmt.Errorf("mosquitto export: username %q is empty or has ':', whitespace or a wildcard", name))
			return false
		case seen[name]:
			errs = append(errs, fmt.Errorf("mosquitto export: duplicate user %q", name))
			return false
		case !strings.HasPrefix(hash, "$7$") || strings.ContainsAny(hash, " \t\r\n"):
			errs = append(errs, fmt.Errorf("mosquitto export: user %q has no \"$7$\" password hash", name))
			return false
		}
		seen[name] = true
		fmt.Fprintf(&pw, "%s:%s\n", name, hash)
		return true
	}
	for _, u := range full {
		if user(u.Username, u.PasswordHash) {
			fmt.Fprintf(&ac, "\nuser %s\ntopic readwrite %s/#\n", u.Username, root)
		}
	}
	accs := slices.Clone(accounts)
	slices.SortFunc(accs, func(a, b Account) int { return strings.Compare(a.Username, b.Username) })
	for _, a := range accs {
		if err := device.ValidateID("site", a.Site); err != nil {
			errs = append(errs, fmt.Errorf("mosquitto export: user %q: %w", a.Username, err))
			continue
		}
		if !user(a.Username, a.PasswordHash) {
			continue
		}
		fmt.Fprintf(&ac, "\nuser %s\n", a.Username)
		devs := slices.Clone(a.Devices)
		slices.Sort(devs)
		for _, d := range devs {
			if err := device.ValidateID("device", d); err != nil {
				errs = append(errs, fmt.Errorf("mosquitto export: user %q: %w", a.Username, err))
				continue
			}
			for _, ch := range []device.Channel{device.ChanTelemetry, device.ChanEvent, device.ChanStatus, device.ChanCommandAck} {
				fmt.Fprintf(&ac, "topic write %s\n", device.Topic{Root: root, Site: a.Site, Device: d, Channel: ch})
			}
			fmt.Fprintf(&ac, "topic read %s\n", device.Topic{Root: root, Site: a.Site, Device: d, Channel: device.ChanCommand})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return pw.Bytes(), ac.Bytes(), nil
}
