package broker

// Session takeovers: a second connection with a client id that is already
// connected disconnects the first (MQTT-3.1.4-3). Once is a reconnect; again
// and again is two devices configured with one id, or a credential used
// somewhere it should not be, kicking each other off.

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
)

// takeoverHook counts takeovers per client id and signals a client id
// taken over Limit times within Window, once per Window, as a
// device.EventClientTakeover event.
type takeoverHook struct {
	mqtt.HookBase
	srv    *mqtt.Server
	root   string
	limit  int
	window time.Duration
	now    func() time.Time
	log    *slog.Logger
	// siteOf returns the site of an authenticated client ("" when unknown).
	siteOf func(cl *mqtt.Client) string

	total    prometheus.Counter
	signals  prometheus.Counter
	mu       sync.Mutex
	seen     map[string][]time.Time // client id -> takeover times within window
	signaled map[string]time.Time
	boot     uint32
	seq      uint64
}

func newTakeoverHook(root string, limit int, window time.Duration, log *slog.Logger) *takeoverHook {
	if root == "" {
		root = device.DefaultRoot
	}
	return &takeoverHook{root: root, limit: limit, window: window, now: time.Now, log: log,
		seen: map[string][]time.Time{}, signaled: map[string]time.Time{}, boot: uint32(time.Now().Unix()),
		total: prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_broker_session_takeovers_total",
			Help: "Connections that took over the client id of a client still connected (the first is disconnected); each is logged with both remote addresses."}),
		signals: prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_broker_takeover_alerts_total",
			Help: "Client ids taken over too often within the window, each signalled once per window as a client_takeover event."}),
	}
}

func (h *takeoverHook) ID() string { return "eldercare-takeover" }

func (h *takeoverHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish}, []byte{b})
}

// OnSessionEstablish runs after authentication, before the new connection
// inherits (and so disconnects) a connected client with its id.
func (h *takeoverHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.srv.Clients.Get(cl.ID)
	if !ok || old.Closed() || old.Net.Inline {
		return
	}
	h.total.Inc()
	user := string(cl.Properties.Username)
	now := h.now()
	h.mu.Lock()
	times := append(h.seen[cl.ID], now)
	for len(times) > 0 && now.Sub(times[0]) > h.window {
		times = times[1:]
	}
	h.seen[cl.ID] = times
	n := len(times)
	signal := n >= h.limit && now.Sub(h.signaled[cl.ID]) > h.window
	if signal {
		h.signaled[cl.ID] = now
		h.seq++
	}
	seq := h.seq
	h.mu.Unlock()
	h.log.Warn("mqtt client id taken over: a new connection uses the id of a connected client, which is disconnected (two devices configured with one client id, or one credential used twice?)",
		"client", cl.ID, "user", user, "old_remote", old.Net.Remote, "new_remote", cl.Net.Remote, "takeovers_in_window", n, "window", h.window)
	if !signal {
		return
	}
	h.signals.Inc()
	site := ""
	if h.siteOf != nil {
		site = h.siteOf(cl)
	}
	topic, payload := takeoverEvent(h.root, site, cl.ID, user, n, h.window, old.Net.Remote, cl.Net.Remote, h.boot, seq, now)
	h.log.Error("mqtt client id keeps being taken over: signalled as a client_takeover event for an operations alert",
		"client", cl.ID, "user", user, "takeovers", n, "window", h.window, "topic", topic)
	// Not from inside the connect handling of the client.
	go func() {
		if err := h.srv.Publish(topic, payload, false, 1); err != nil {
			h.log.Error("publish client_takeover event", "topic", topic, "err", err)
		}
	}()
}

// takeoverEvent renders the client_takeover event: on
// {root}/v1/{site}/{client id}/event, where site is the site of the
// gateway account that owns the id (device.OpsSite for the platform's own
// or unauthenticated clients) and the device level is the client id
// ("_broker" when the id is not a valid protocol id; attrs.client_id has
// it in full).
func takeoverEvent(root, site, clientID, user string, n int, window time.Duration, oldRemote, newRemote string, boot uint32, seq uint64, now time.Time) (string, []byte) {
	if site == "" || device.ValidateID("site", site) != nil {
		site = device.OpsSite
	}
	dev := clientID
	if device.ValidateID("device", dev) != nil {
		dev = device.OpsBrokerDevice
	}
	ev := device.Event{V: device.Version, Device: dev, Boot: boot, ID: seq, Seq: seq, TS: now.UnixMilli(),
		Type: device.EventClientTakeover, Attrs: map[string]any{
			"client_id": clip(clientID), "username": clip(user), "takeovers": n, "window_s": int(window / time.Second),
			"old_remote": oldRemote, "new_remote": newRemote,
		}}
	b, _ := json.Marshal(ev)
	return device.Topic{Root: root, Site: site, Device: dev, Channel: device.ChanEvent}.String(), b
}

// clip keeps at most 256 bytes, the protocol's limit of a string attribute.
func clip(s string) string {
	if len(s) > 256 {
		return s[:256]
	}
	return s
}
