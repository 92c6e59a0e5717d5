package broker

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// packetIDHook works around a loss of queued messages in mochi-mqtt
// v2.7.9 (Server.processPublish; mochi-mqtt/server#519, fixed upstream
// after v2.7.9, and #545, still open, for QoS 2).
//
// MQTT packet identifiers are per direction: a client numbers its own
// PUBLISHes, the broker numbers the ones it delivers to that client, and
// the two may use the same number at the same time. mochi keeps both in
// one map per client (Client.State.Inflight, keyed by packet id). When a
// client publishes QoS 1 or 2 with packet id P while a delivery to it with
// the same id P is still unacknowledged, processPublish deletes that
// delivery from the map (and, for QoS 1, OnQosComplete then deletes it
// from the store): the message is never sent again, even to a persistent
// session that reconnects. A persistent subscriber that also publishes
// QoS 1 on the same connection loses one queued message per collision.
//
// The hook gives such an inbound PUBLISH, inside the broker, an id that is
// free in the map (taken with Client.NextPacketID, so the broker's own
// numbering reaches it again only after going once round the 65535 ids)
// and writes the acknowledgements (PUBACK; PUBREC, PUBCOMP for QoS 2) with
// the client's id again; a PUBREL from the client is mapped likewise. The
// queued delivery keeps its place. Without a collision nothing changes.
type packetIDHook struct {
	mqtt.HookBase
	log *slog.Logger

	mu sync.Mutex
	// byClient holds the mappings of each client id with one in effect:
	// a QoS 1 one lives from the PUBLISH to its PUBACK, a QoS 2 one from
	// the PUBLISH to the PUBCOMP (across reconnections of a persistent
	// session, whose PUBREC mochi keeps).
	byClient map[string]*idMapping
	clients  atomic.Int64 // len(byClient), read without mu
}

// idMapping maps a client's packet ids to the ids used inside mochi and
// back.
type idMapping struct {
	inside  map[uint16]uint16 // client's id -> mochi's
	outside map[uint16]uint16 // mochi's id -> client's
}

func newPacketIDHook(log *slog.Logger) *packetIDHook {
	return &packetIDHook{log: log, byClient: map[string]*idMapping{}}
}

func (h *packetIDHook) ID() string { return "eldercare-packet-ids" }

func (h *packetIDHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPacketRead, mqtt.OnPacketEncode, mqtt.OnDisconnect, mqtt.OnClientExpired}, []byte{b})
}

// outbound reports whether pk, an entry of a client's inflight map, belongs
// to a delivery from the broker to the client (a PUBLISH waiting for its
// PUBACK or PUBREC, or the PUBREL of a QoS 2 delivery).
func outbound(pk packets.Packet) bool {
	return pk.FixedHeader.Type == packets.Publish || pk.FixedHeader.Type == packets.Pubrel
}

// OnPacketRead maps the id of a client's QoS 1/2 PUBLISH that collides
// with an unacknowledged delivery, of the PUBREL that follows a mapped
// QoS 2 PUBLISH, and of a PUBREL of a flow the broker no longer holds that
// collides with a delivery.
func (h *packetIDHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	switch {
	case pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0:
	case pk.FixedHeader.Type == packets.Pubrel:
	default:
		return pk, nil
	}
	if h.clients.Load() == 0 {
		// The common case, without the lock: no mapping in effect, no
		// collision. (A mapping is made and used in the client's own
		// goroutine, this one.)
		if e, found := cl.State.Inflight.Get(pk.PacketID); !found || !outbound(e) {
			return pk, nil
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.byClient[cl.ID]
	if m != nil {
		if in, ok := m.inside[pk.PacketID]; ok {
			// Still in effect only while mochi holds the PUBREC of a
			// mapped QoS 2 message (a QoS 1 mapping whose PUBACK was
			// never written, or a PUBREC mochi dropped, is stale).
			if e, found := cl.State.Inflight.Get(in); found && e.FixedHeader.Type == packets.Pubrec {
				pk.PacketID = in
				return pk, nil
			}
			m.remove(pk.PacketID)
		}
	}
	defer h.dropEmpty(cl.ID)
	// A PUBREL without a mapping in effect is for a flow the broker no
	// longer holds when its id is that of a delivery (or of another mapped
	// message): its PUBREC state went with a restart, which the store does
	// not keep, while the deliveries queued since took the id. mochi would
	// take it for the end of that delivery and drop it unacknowledged
	// (processPubrel checks the id only): mapped to a free id, it gets its
	// PUBCOMP (identifier not found) and nothing else.
	e, found := cl.State.Inflight.Get(pk.PacketID)
	mapped := false // pk's id is the id inside mochi of another mapped message
	if m != nil {
		if _, ok := m.outside[pk.PacketID]; ok {
			if found && e.FixedHeader.Type == packets.Pubrec {
				mapped = true
			} else {
				m.remove(m.outside[pk.PacketID]) // stale
			}
		}
	}
	if !found || !(outbound(e) || mapped) {
		return pk, nil
	}
	in, err := cl.NextPacketID()
	if err != nil {
		h.log.Warn("embedded broker: a client's packet id collides with a queued message and no id is free to avoid it; the queued message may be lost",
			"client", cl.ID, "packet_id", pk.PacketID)
		return pk, nil
	}
	if m == nil {
		m = &idMapping{inside: map[uint16]uint16{}, outside: map[uint16]uint16{}}
		h.byClient[cl.ID] = m
	}
	m.set(pk.PacketID, uint16(in))
	pk.PacketID = uint16(in)
	return pk, nil
}

// set maps the client's id to in. A mapping left to in is stale (in is
// free in mochi's map) and is forgotten first: one that a discarded
// session left (a clean reconnection, an expired PUBREC), whose client id
// would otherwise still lead to in and so to the new message's PUBREC.
func (m *idMapping) set(client, in uint16) {
	if old, ok := m.outside[in]; ok {
		delete(m.inside, old)
	}
	m.inside[client] = in
	m.outside[in] = client
}

// dropEmpty forgets the client's mappings when none is left, and counts
// the clients with mappings; mu held.
func (h *packetIDHook) dropEmpty(id string) {
	if m := h.byClient[id]; m != nil && len(m.inside) == 0 {
		delete(h.byClient, id)
	}
	h.clients.Store(int64(len(h.byClient)))
}

func (m *idMapping) remove(client uint16) {
	if in, ok := m.inside[client]; ok && m.outside[in] == client {
		delete(m.outside, in)
	}
	delete(m.inside, client)
}

// OnPacketEncode writes the acknowledgement of a mapped PUBLISH (and the
// PUBCOMP of a mapped PUBREL) with the client's id.
func (h *packetIDHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec, packets.Pubcomp: // the broker sends these only for the client's own messages
	default:
		return pk
	}
	if h.clients.Load() == 0 {
		return pk
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.byClient[cl.ID]
	if m == nil {
		return pk
	}
	client, ok := m.outside[pk.PacketID]
	if !ok {
		return pk
	}
	if pk.FixedHeader.Type != packets.Pubrec {
		m.remove(client) // the flow ends here
		h.dropEmpty(cl.ID)
	}
	pk.PacketID = client
	return pk
}

// OnDisconnect forgets the mappings of a session that ends.
func (h *packetIDHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() {
		h.forget(cl.ID)
	}
}

func (h *packetIDHook) OnClientExpired(cl *mqtt.Client) { h.forget(cl.ID) }

func (h *packetIDHook) forget(id string) {
	h.mu.Lock()
	delete(h.byClient, id)
	h.clients.Store(int64(len(h.byClient)))
	h.mu.Unlock()
}
