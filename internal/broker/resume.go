// Session resumption: messages that mochi v2.7.9 queues on the old client
// object while a persistent session moves to a new connection.

package broker

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
)

// resumeHook delivers the QoS 1/2 messages that mochi v2.7.9 would lose
// when a persistent session resumes on a new connection (a service
// restarting, a gateway reconnecting after a network blip).
//
// mochi's attachClient copies the old client's in-flight queue to the new
// connection (inheritClientSession: Inflight.Clone), clears the old queue
// and only then registers the new connection (Clients.Add). A message
// published in between is routed, by client id, to the old client object:
// queued after the copy, it is either cleared with the old queue
// (OnQosDropped on a taken-over client) or left on the old object, which
// nobody reads again (OnQosPublish on a taken-over client). Either way the
// subscriber never gets it while the broker runs. Seen as a lost SOS press
// in cmd/eldercare's TestRestartAlerting (2 % of runs on a loaded 2-core
// machine: the press was published at the moment alerting reconnected).
//
// The hook keeps such messages by client id and, once the new connection's
// session is established (after mochi resent the copied queue and before
// it reads the client's acknowledgements), queues on it every one the copy
// does not hold; one that reaches a taken-over client after that goes to
// the registered connection at once. A clean session takes nothing over.
type resumeHook struct {
	mqtt.HookBase
	srv *mqtt.Server
	log *slog.Logger
	// requeued stores a message queued on cl under a new packet id
	// (storeHook.OnQosPublish); nil without a store. The record under its
	// old id stays: at worst a duplicate after a restart, never a loss.
	requeued func(cl *mqtt.Client, moved packets.Packet)

	mu      sync.Mutex
	live    map[string]*mqtt.Client     // client id -> connection whose session is established
	orphans map[string][]packets.Packet // client id -> messages left on taken-over clients

	resumed prometheus.Counter
}

func newResumeHook(srv *mqtt.Server, log *slog.Logger) *resumeHook {
	return &resumeHook{srv: srv, log: log, live: map[string]*mqtt.Client{}, orphans: map[string][]packets.Packet{},
		resumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "eldercare_broker_resumed_messages_total",
			Help: "QoS 1/2 messages queued on a persistent session while it moved to a new connection, delivered on the new connection (mochi v2.7.9 alone would not deliver them)."}),
	}
}

// ID names the hook for mochi.
func (h *resumeHook) ID() string { return "eldercare-session-resume" }

// Provides lists the hook's events.
func (h *resumeHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSessionEstablish, mqtt.OnQosPublish, mqtt.OnQosDropped, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired}, []byte{b})
}

// OnSessionEstablish, before mochi copies and clears the queue of the
// connection cl takes over, moves that connection's packet ids past every
// id in its queue. A message queued on it meanwhile would otherwise take
// the id of one already cleared from it (a session restored from the store
// numbers from 1 again), and the store would keep it under that message's
// key: the queued message's record replaced, lost at the next start if
// the new connection fails before mochi resends (and stores) its queue.
func (h *resumeHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	old, ok := h.srv.Clients.Get(cl.ID)
	if !ok || old.Net.Inline {
		return
	}
	var top uint16
	for _, pk := range old.State.Inflight.GetAll(false) {
		top = max(top, pk.PacketID)
	}
	for id := uint32(0); id < uint32(top); {
		var err error
		if id, err = old.NextPacketID(); err != nil {
			return
		}
	}
}

// OnQosPublish catches a message queued on a taken-over client.
func (h *resumeHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type == packets.Publish && cl.IsTakenOver() && !cl.Net.Inline {
		h.orphan(cl, pk)
	}
}

// OnQosDropped catches a message cleared from a taken-over client's queue
// (mochi clears the old queue after copying it, so most of these are in
// the copy; deliver skips those).
func (h *resumeHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type == packets.Publish && cl.IsTakenOver() && !cl.Net.Inline {
		h.orphan(cl, pk)
	}
}

func (h *resumeHook) orphan(old *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	to := h.live[old.ID]
	if to == nil || to == old {
		h.orphans[old.ID] = append(h.orphans[old.ID], pk.Copy(true)) // true: with its packet id
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.deliver(to, pk)
}

// OnSessionEstablished queues the kept messages of cl's client id on cl.
func (h *resumeHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	if cl.IsTakenOver() {
		// A newer connection took the session over before this one's
		// was established (a client that gave up on a slow CONNACK): the
		// kept messages are for that one. Checked under mu: the newer
		// connection's OnSessionEstablished comes after it set the flag.
		h.mu.Unlock()
		return
	}
	h.live[cl.ID] = cl
	kept := h.orphans[cl.ID]
	delete(h.orphans, cl.ID)
	h.mu.Unlock()
	if cl.Properties.Clean {
		return // a clean session starts empty [MQTT-3.1.2-6]
	}
	for _, pk := range kept {
		h.deliver(cl, pk)
	}
}

// OnDisconnect forgets cl as its id's live connection.
func (h *resumeHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	if h.live[cl.ID] == cl {
		delete(h.live, cl.ID)
	}
	h.mu.Unlock()
}

// OnClientExpired drops what was kept for an expired session.
func (h *resumeHook) OnClientExpired(cl *mqtt.Client) {
	h.mu.Lock()
	delete(h.orphans, cl.ID)
	if h.live[cl.ID] == cl {
		delete(h.live, cl.ID)
	}
	h.mu.Unlock()
}

// deliver queues pk on cl and sends it, unless cl's queue already holds it
// (the copy mochi made). It keeps pk's packet id when cl has it free, else
// takes a new one (and moves the stored copy).
func (h *resumeHook) deliver(cl *mqtt.Client, pk packets.Packet) {
	if have, ok := cl.State.Inflight.Get(pk.PacketID); ok && have.TopicName == pk.TopicName &&
		have.Created == pk.Created && bytes.Equal(have.Payload, pk.Payload) {
		return
	}
	if pk.TopicName == "" {
		// An MQTT 5 topic alias of the old connection replaced the
		// name; the new connection does not know that alias.
		h.log.Error("embedded broker: a message of a resumed session had only a topic alias; it stays in the store for the next start",
			"client", cl.ID, "packet_id", pk.PacketID)
		return
	}
	out := pk.Copy(true)
	out.FixedHeader.Dup = false
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	if _, taken := cl.State.Inflight.Get(out.PacketID); taken || out.PacketID == 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			h.log.Error("embedded broker: no packet id for a message of a resumed session; it stays in the store for the next start",
				"client", cl.ID, "topic", pk.TopicName, "err", err)
			return
		}
		out.PacketID = uint16(id)
		if h.requeued != nil {
			h.requeued(cl, out)
		}
	}
	if !cl.State.Inflight.Set(out) {
		// mochi's Set replaces: a publish to cl took this id since the
		// check above, and one of the two is overwritten. A window of
		// microseconds, not closed yet: closing it needs the id reserved
		// before the check, which mochi's Inflight does not offer.
		return
	}
	atomic.AddInt64(&h.srv.Info.Inflight, 1)
	cl.State.Inflight.DecreaseSendQuota()
	if cl.IsTakenOver() {
		// cl was taken over meanwhile, maybe after mochi copied its
		// queue: keep pk for the connection that took over (deliver
		// skips it there if the copy holds it).
		h.orphan(cl, out)
		return
	}
	h.resumed.Inc()
	h.log.Warn("embedded broker: delivered a message queued while the session moved to a new connection",
		"client", cl.ID, "topic", pk.TopicName, "packet_id", out.PacketID)
	if err := cl.WritePacket(out); err != nil {
		// It stays queued: mochi sends it again when the session resumes.
		h.log.Debug("embedded broker: resumed message not sent yet", "client", cl.ID, "err", err)
	}
}
