package broker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
		case strings.HasPrefix(hash, "$argon2id$"):
			errs = append(errs, fmt.Errorf("mosquitto export: user %q: %w", name, ErrArgon2idHash))
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

// DynsecFile renders the same users and topic ACL as Mosquitto's dynamic
// security plugin configuration (dynamic-security.json, Mosquitto >= 2.0;
// https://mosquitto.org/documentation/dynamic-security/), with one
// addition the password and ACL files cannot express: each device account
// is bound to the client id equal to its username (the plugin's per-client
// "clientid"), so no gateway credential can connect with a platform
// service's client id or another gateway's and take over its session.
// Full users (the platform's services) have no fixed client id: replicas
// need one each. Hashes are converted from "$7$" (PBKDF2-SHA512, the
// algorithm the plugin uses) to the plugin's password, salt and iterations.
// Default access: publish and subscribe denied, receive allowed (a device
// can subscribe only to its own command topics anyway).
func DynsecFile(root string, accounts []Account, full []MosquittoUser) ([]byte, error) {
	if err := device.ValidateRoot(root); err != nil {
		return nil, err
	}
	if root == "" {
		root = device.DefaultRoot
	}
	type acl struct {
		Type  string `json:"acltype"`
		Topic string `json:"topic"`
		Allow bool   `json:"allow"`
	}
	type role struct {
		Name string `json:"rolename"`
		ACLs []acl  `json:"acls"`
	}
	type roleRef struct {
		Name string `json:"rolename"`
	}
	type client struct {
		Username   string    `json:"username"`
		ClientID   string    `json:"clientid,omitempty"`
		TextName   string    `json:"textName,omitempty"`
		Password   string    `json:"password"`
		Salt       string    `json:"salt"`
		Iterations int       `json:"iterations"`
		Roles      []roleRef `json:"roles"`
	}
	doc := struct {
		DefaultACLAccess map[string]bool `json:"defaultACLAccess"`
		Clients          []client        `json:"clients"`
		Groups           []any           `json:"groups"`
		Roles            []role          `json:"roles"`
	}{
		DefaultACLAccess: map[string]bool{"publishClientSend": false, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
		Clients:          []client{}, Groups: []any{}, Roles: []role{},
	}
	var errs []error
	seen := map[string]bool{}
	add := func(name, hash, clientID, text string, acls []acl) {
		switch {
		case name == "" || strings.ContainsAny(name, " \t\r\n+#"):
			errs = append(errs, fmt.Errorf("mosquitto export: username %q is empty or has whitespace or a wildcard", name))
			return
		case seen[name]:
			errs = append(errs, fmt.Errorf("mosquitto export: duplicate user %q", name))
			return
		}
		iter, salt, key, err := splitHash7(hash)
		if err != nil {
			errs = append(errs, fmt.Errorf("mosquitto export: user %q: %w", name, err))
			return
		}
		seen[name] = true
		rn := "eldercare-" + name
		doc.Clients = append(doc.Clients, client{Username: name, ClientID: clientID, TextName: text,
			Password: key, Salt: salt, Iterations: iter, Roles: []roleRef{{rn}}})
		doc.Roles = append(doc.Roles, role{Name: rn, ACLs: acls})
	}
	for _, u := range full {
		add(u.Username, u.PasswordHash, "", "eldercare platform services", []acl{
			{"publishClientSend", root + "/#", true},
			{"subscribePattern", root + "/#", true},
			{"subscribePattern", "$share/+/" + root + "/#", true},
			{"unsubscribePattern", "#", true},
		})
	}
	accs := slices.Clone(accounts)
	slices.SortFunc(accs, func(a, b Account) int { return strings.Compare(a.Username, b.Username) })
	for _, a := range accs {
		if err := device.ValidateID("site", a.Site); err != nil {
			errs = append(errs, fmt.Errorf("mosquitto export: user %q: %w", a.Username, err))
			continue
		}
		var acls []acl
		devs := slices.Clone(a.Devices)
		slices.Sort(devs)
		for _, d := range devs {
			if err := device.ValidateID("device", d); err != nil {
				errs = append(errs, fmt.Errorf("mosquitto export: user %q: %w", a.Username, err))
				continue
			}
			for _, ch := range []device.Channel{device.ChanTelemetry, device.ChanEvent, device.ChanStatus, device.ChanCommandAck} {
				acls = append(acls, acl{"publishClientSend", device.Topic{Root: root, Site: a.Site, Device: d, Channel: ch}.String(), true})
			}
			acls = append(acls, acl{"subscribeLiteral", device.Topic{Root: root, Site: a.Site, Device: d, Channel: device.ChanCommand}.String(), true})
		}
		add(a.Username, a.PasswordHash, a.Username, "gateway of site "+a.Site, acls)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ErrArgon2idHash: an account's hash is argon2id (set so, or rehashed by the
// embedded broker at a CONNECT), which Mosquitto 2.0's password file and
// dynamic-security plugin cannot read; no plaintext is kept to convert it.
// The gateway needs a new password, hashed for Mosquitto.
var ErrArgon2idHash = errors.New(`its password hash is argon2id (the embedded broker rehashed it at a CONNECT, or it was set so), which Mosquitto 2.0 cannot read and which cannot be converted: give this gateway a new password, put its hash from "eldercare hash-password --format mosquitto" in the registry's credentials (password_hash) and export again`)

// WeakMosquittoIterations reports whether a "$7$" hash has fewer PBKDF2
// iterations than want (false for other formats and malformed hashes).
func WeakMosquittoIterations(hash string, want int) (iter int, weak bool) {
	iter, _, _, err := splitHash7(hash)
	if err != nil {
		return 0, false
	}
	return iter, iter < want
}

// splitHash7 splits "$7$iterations$salt$hash" (base64 salt and hash).
func splitHash7(h string) (iter int, salt, key string, err error) {
	if strings.HasPrefix(h, "$argon2id$") {
		return 0, "", "", ErrArgon2idHash
	}
	parts := strings.Split(h, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "7" {
		return 0, "", "", errors.New(`no "$7$" password hash`)
	}
	iter, err = strconv.Atoi(parts[2])
	if err != nil || iter <= 0 {
		return 0, "", "", errors.New(`"$7$" hash with a bad iteration count`)
	}
	for _, p := range parts[3:] {
		if _, err := base64.StdEncoding.DecodeString(p); err != nil || p == "" {
			return 0, "", "", errors.New(`"$7$" hash with a bad salt or key`)
		}
	}
	return iter, parts[3], parts[4], nil
}
