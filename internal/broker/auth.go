package broker

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
	"github.com/eldercare-iot/eldercare/device/registry"
)

// ErrUnknownUser is what an Auth.Lookup returns (wrapped) for a username
// without an account.
var ErrUnknownUser = errors.New("unknown MQTT user")

// Account is a device login the broker admits: a gateway (or a device with
// its own connection) of one site, allowed to publish for Devices.
type Account struct {
	Username string
	// PasswordHash is Mosquitto's "$7$" PBKDF2-SHA512 hash
	// (registry.HashPassword, mosquitto_passwd).
	PasswordHash string
	// Site is the site level of every topic the account may use.
	Site string
	// Devices are the device levels it may publish for: itself and the
	// devices behind it.
	Devices []string
}

// Auth turns on authentication and the topic ACL of the embedded broker.
//
// A device account (from Lookup) may publish only on
// {root}/v1/{Site}/{d}/telemetry, event, status and cmd/ack, for d in its
// Devices, may subscribe only to {root}/v1/{Site}/{d}/cmd (exact filters, no
// wildcards), and its last will must be on one of its status topics. The
// internal account has full access; the platform's own services use it.
// Anonymous clients and bad passwords are refused at CONNECT (CONNACK "bad
// user name or password" / "not authorized").
//
// A publish outside the ACL is dropped; with QoS 1 mochi-mqtt then closes
// an MQTT 3.1.1 connection (MQTT 5 gets a PUBACK with reason code 0x87).
//
// Client ids are bound to credentials: a device account may connect only
// with its username as client id, so no gateway credential can take over
// the session of another gateway or of a platform service (whose
// persistent session would then receive, and acknowledge, the messages
// meant for alerting or ingest). ServiceClientIDs are reserved for the
// internal account; a registry account named like one is refused.
type Auth struct {
	// Root is the topic root; "" is device.DefaultRoot.
	Root string
	// Lookup returns the account of a username, or an error wrapping
	// ErrUnknownUser. It is called at every CONNECT, so changes to the
	// registry apply to the next connection.
	Lookup func(ctx context.Context, username string) (Account, error)
	// InternalUser and InternalPassword are the platform's own account
	// (full access). An empty InternalUser disables it.
	InternalUser     string
	InternalPassword string
	// ServiceClientIDs are the client ids of the platform's own services
	// (e.g. "eldercare-up-alerting"): only the internal account may use
	// them.
	ServiceClientIDs []string
	// Rehash, when set, stores a new hash of a device account's password:
	// after a successful CONNECT whose stored hash is weaker than argon2id
	// (registry.NeedsRehash, e.g. Mosquitto 2.0's 101-iteration "$7$"),
	// the broker hashes the password it just verified with
	// registry.HashPasswordArgon2id and calls Rehash (in the background;
	// a failure is logged). A password shorter than
	// registry.MinGatewayPasswordLen is not rehashed but logged, so the
	// operator sets a longer one.
	Rehash func(ctx context.Context, username, hash string) error
	// Now is the clock of the password-guess throttle (throttle.go);
	// nil = time.Now. Tests inject one.
	Now func() time.Time
}

// authHook is the mochi hook that implements Auth.
type authHook struct {
	mqtt.HookBase
	cfg Auth
	log *slog.Logger
	// sessions holds the ACL of each client id. It outlives the
	// connection: messages for a persistent session are checked against it
	// while the client is away (mochi checks every delivery), and a session
	// restored from the store at start gets its ACL from its stored
	// username (aclOf).
	sessions sync.Map // client id -> *session
	refused  *prometheus.CounterVec
	denied   *prometheus.CounterVec
	// throttle holds back password guessing (throttle.go).
	throttle *throttle
	// hashing bounds concurrent password checks: GOMAXPROCS slots.
	hashing chan struct{}
}

// rehash stores an argon2id hash of the verified password pass of user
// (Auth.Rehash), in the background.
func (h *authHook) rehash(user, pass string) {
	if len(pass) < registry.MinGatewayPasswordLen {
		h.log.Warn("mqtt: gateway password is shorter than the minimum; set a longer one (it stays hashed the old way)",
			"user", user, "min", registry.MinGatewayPasswordLen)
		return
	}
	go func() {
		h.hashing <- struct{}{}
		hash, err := registry.HashPasswordArgon2id(pass)
		<-h.hashing
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = h.cfg.Rehash(ctx, user, hash)
			cancel()
		}
		if err != nil {
			h.log.Warn("mqtt: rehash of a gateway password failed; it stays hashed the old way", "user", user, "err", err)
			return
		}
		h.log.Info("mqtt: gateway password rehashed with argon2id", "user", user)
	}()
}

type session struct {
	internal bool
	site     string
	write    map[string]bool
	read     map[string]bool
}

func (h *authHook) ID() string { return "eldercare-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnClientExpired}, []byte{b})
}

// accountSession builds the ACL of an account.
func accountSession(root string, a Account) *session {
	s := &session{site: a.Site, write: map[string]bool{}, read: map[string]bool{}}
	for _, d := range a.Devices {
		for _, ch := range []device.Channel{device.ChanTelemetry, device.ChanEvent, device.ChanStatus, device.ChanCommandAck} {
			s.write[device.Topic{Root: root, Site: a.Site, Device: d, Channel: ch}.String()] = true
		}
		s.read[device.Topic{Root: root, Site: a.Site, Device: d, Channel: device.ChanCommand}.String()] = true
	}
	return s
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(cl.Properties.Username)
	pass := string(pk.Connect.Password)
	remote := cl.Net.Remote
	refuse := func(reason string, args ...any) bool {
		h.refused.WithLabelValues(reason).Inc()
		h.log.Warn("mqtt connect refused", append([]any{"reason", reason, "user", user, "client", cl.ID, "remote", remote}, args...)...)
		return false
	}
	if user == "" {
		return refuse("anonymous")
	}
	if w := h.throttle.wait(user, remote); w > 0 {
		return refuse("throttled", "retry_in", w.Round(time.Second))
	}
	badPassword := func(reason string) bool {
		h.throttle.fail(user, remote)
		return refuse(reason)
	}
	if h.cfg.InternalUser != "" && user == h.cfg.InternalUser {
		if subtle.ConstantTimeCompare([]byte(pass), []byte(h.cfg.InternalPassword)) != 1 {
			return badPassword("bad_password")
		}
		h.throttle.ok(user, remote)
		h.sessions.Store(cl.ID, &session{internal: true})
		return true
	}
	if slices.Contains(h.cfg.ServiceClientIDs, cl.ID) || slices.Contains(h.cfg.ServiceClientIDs, user) {
		return refuse("client_id", "detail", "client id reserved for the platform's services")
	}
	if cl.ID != user {
		return refuse("client_id", "detail", "a device account must connect with its username as client id")
	}
	if h.cfg.Lookup == nil {
		return refuse("unknown_user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	acc, err := h.cfg.Lookup(ctx, user)
	cancel()
	switch {
	case errors.Is(err, ErrUnknownUser):
		return badPassword("unknown_user")
	case err != nil:
		return refuse("lookup_error", "err", err)
	}
	h.hashing <- struct{}{} // bound concurrent argon2id checks (19 MiB each)
	match := registry.CheckPassword(acc.PasswordHash, pass)
	<-h.hashing
	if !match {
		return badPassword("bad_password")
	}
	h.throttle.ok(user, remote)
	if h.cfg.Rehash != nil && registry.NeedsRehash(acc.PasswordHash) {
		h.rehash(user, pass)
	}
	s := accountSession(h.cfg.Root, acc)
	if pk.Connect.WillFlag && !s.write[pk.Connect.WillTopic] {
		// mochi does not check a last will against the ACL: refuse it here.
		return refuse("will_topic", "will_topic", pk.Connect.WillTopic)
	}
	h.sessions.Store(cl.ID, s)
	return true
}

// aclOf returns the ACL of a client: the one its connection was given, or
// for a persistent session restored from the store (no connection yet), one
// built from its stored username.
func (h *authHook) aclOf(cl *mqtt.Client) (*session, bool) {
	if v, ok := h.sessions.Load(cl.ID); ok {
		return v.(*session), true
	}
	user := string(cl.Properties.Username)
	switch {
	case user == "":
		return nil, false
	case h.cfg.InternalUser != "" && user == h.cfg.InternalUser:
		s := &session{internal: true}
		h.sessions.Store(cl.ID, s)
		return s, true
	case h.cfg.Lookup == nil || cl.ID != user:
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	acc, err := h.cfg.Lookup(ctx, user)
	cancel()
	if err != nil {
		h.log.Warn("mqtt: no ACL for a stored session; its messages are not delivered", "client", cl.ID, "user", user, "err", err)
		return nil, false
	}
	s := accountSession(h.cfg.Root, acc)
	h.sessions.Store(cl.ID, s)
	return s, true
}

// siteOf is the site of a client's account ("" for the internal account).
func (h *authHook) siteOf(cl *mqtt.Client) string {
	if v, ok := h.sessions.Load(cl.ID); ok {
		return v.(*session).site
	}
	return ""
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s, ok := h.aclOf(cl)
	if !ok {
		return false
	}
	if s.internal {
		return true
	}
	if write && s.write[topic] || !write && s.read[topic] {
		return true
	}
	// A gateway can subscribe only to exact downlink filters, so every
	// delivery check it gets passes: a refused read is a refused subscribe.
	op := "subscribe"
	if write {
		op = "publish"
	}
	h.denied.WithLabelValues(op).Inc()
	h.log.Warn("mqtt "+op+" outside the client's ACL refused", "user", string(cl.Properties.Username), "client", cl.ID, "topic", topic)
	return false
}

// OnClientExpired forgets the ACL of a session the broker forgot. (A
// clean session's ACL stays until the id connects again: a few hundred
// bytes per client id the credentials allow.)
func (h *authHook) OnClientExpired(cl *mqtt.Client) {
	h.sessions.Delete(cl.ID)
}

// newAuthHook validates a and builds the hook.
func newAuthHook(a Auth, log *slog.Logger, reg prometheus.Registerer) (*authHook, error) {
	var errs []error
	if err := device.ValidateRoot(a.Root); err != nil {
		errs = append(errs, fmt.Errorf("broker auth root: %w", err))
	}
	if a.InternalUser != "" && len(a.InternalPassword) < 16 {
		errs = append(errs, errors.New("broker auth: the internal password must have at least 16 characters"))
	}
	if a.InternalUser == "" && a.Lookup == nil {
		errs = append(errs, errors.New("broker auth: give an internal user or an account lookup"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if a.Root == "" {
		a.Root = device.DefaultRoot
	}
	h := &authHook{cfg: a, log: log, throttle: newThrottle(a.Now), hashing: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_broker_connect_refused_total",
			Help: "MQTT connections refused by the embedded broker, by reason: anonymous, unknown_user, bad_password, will_topic, lookup_error, client_id (a device account must use its username as client id; service ids are reserved), throttled (too many failed logins from the address; see ThrottleFreePerPair)."}, []string{"reason"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eldercare_broker_acl_denied_total",
			Help: "Publishes and wildcard subscriptions refused by the embedded broker's topic ACL, by operation."}, []string{"op"}),
	}
	// Every known label value at 0, so increase() sees the first refusal.
	for _, r := range []string{"anonymous", "unknown_user", "bad_password", "will_topic", "lookup_error", "client_id"} {
		h.refused.WithLabelValues(r)
	}
	for _, op := range []string{"publish", "subscribe"} {
		h.denied.WithLabelValues(op)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{h.refused, h.denied} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("broker metrics: %w", err)
			}
		}
	}
	return h, nil
}
