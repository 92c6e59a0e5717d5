// Package broker runs the embedded MQTT broker (mochi-mqtt) that
// "eldercare up" uses when it is given no broker URL.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eldercare-iot/eldercare/device"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is the TCP listen address, e.g. "127.0.0.1:1883". Port 0 picks a
	// free port; URL reports it.
	Addr string
	// MaxPacketSize bounds a message in bytes; 0 = 1 MiB.
	MaxPacketSize uint32
	Logger        *slog.Logger

	// Auth, when not nil, requires credentials at CONNECT and enforces the
	// topic ACL described at Auth. nil keeps the broker open to every
	// client, as "eldercare up" has always run it for the demo.
	Auth *Auth
	// TLSAddr, with TLS, adds a TLS listener, e.g. "127.0.0.1:8883" (port 0
	// picks a free port; TLSURL reports it).
	TLSAddr string
	// TLS is the server's TLS configuration (certificate; ClientCAs and
	// ClientAuth for client certificates).
	TLS *tls.Config
	// Registerer receives the broker's metrics (connections, sessions,
	// queued and retained messages, drops, store size, takeovers, and with
	// Auth eldercare_broker_connect_refused_total and
	// eldercare_broker_acl_denied_total); nil registers nothing.
	Registerer prometheus.Registerer

	// StorePath, when set, is the bbolt file that keeps sessions,
	// subscriptions, queued QoS 1/2 messages and retained messages across a
	// restart or a crash (created with mode 0600; its directory must exist).
	// Empty keeps everything in memory.
	StorePath string
	// StoreNoSync skips the fsync of each store write: the store then
	// survives a crash of the process but not a power loss, and writes are
	// several times faster.
	StoreNoSync bool

	// Root is the topic root of the broker's own events
	// (client_takeover); "" is device.DefaultRoot.
	Root string
	// TakeoverLimit takeovers of one client id within TakeoverWindow are
	// signalled as one client_takeover event per window; 0 means 5 within
	// 10 minutes.
	TakeoverLimit  int
	TakeoverWindow time.Duration
}

// Broker is a running embedded broker.
type Broker struct {
	srv     *mqtt.Server
	addr    net.Addr
	tlsAddr net.Addr
	store   *storeHook
	log     *slog.Logger
	// listeners are the bound listeners mochi serves (TCP, then TLS).
	listeners []*trackListener

	closeOnce sync.Once
	closeErr  error
	// Replayed is how many journalled messages (acknowledged before the
	// last stop but not yet queued for subscribers) were published again
	// at start.
	Replayed int
}

// Start binds the listener and starts serving. An address already in use
// is reported at once, as an error wrapping the net error.
func Start(cfg Config) (*Broker, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = cfg.MaxPacketSize
	if caps.MaximumPacketSize == 0 {
		caps.MaximumPacketSize = 1 << 20
	}
	// Keep QoS 1 messages for a persistent session for a day; queue up to
	// 64510 in-flight messages per client so a slow consumer is not
	// dropped under a burst. That leaves free, of the 65535 packet ids, one
	// more than the client's own unacknowledged QoS 1/2 messages can take
	// (ReceiveMaximum, 1024): packetIDHook always finds an id for a client
	// message whose id collides with a queued delivery (with every id
	// taken, mochi would drop that delivery).
	caps.MaximumInflight = 65535 - caps.ReceiveMaximum - 1
	caps.MaximumClientWritesPending = 64 * 1024
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	caps.MaximumMessageExpiryInterval = 24 * 60 * 60
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// mochi logs every connection at info; keep warnings and errors.
		Logger:       slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "broker"),
		InlineClient: true,
	})
	blog := log.With("component", "broker")
	limit, window := cfg.TakeoverLimit, cfg.TakeoverWindow
	if limit <= 0 {
		limit = 5
	}
	if window <= 0 {
		window = 10 * time.Minute
	}
	takeover := newTakeoverHook(cfg.Root, limit, window, blog)
	takeover.srv = srv
	if err := device.ValidateRoot(cfg.Root); err != nil {
		return nil, fmt.Errorf("embedded broker root: %w", err)
	}
	if cfg.Auth == nil {
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	} else {
		h, err := newAuthHook(*cfg.Auth, blog, cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		takeover.siteOf = h.siteOf
	}
	if err := srv.AddHook(takeover, nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	// A client's QoS 1/2 publish must not drop a queued delivery that
	// has the same packet id (see packetIDHook).
	if err := srv.AddHook(newPacketIDHook(blog), nil); err != nil {
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	var store *storeHook
	if cfg.StorePath != "" {
		var err error
		if store, err = openStore(cfg.StorePath, cfg.StoreNoSync, blog); err != nil {
			return nil, err
		}
		if err := srv.AddHook(store, nil); err != nil {
			store.Stop()
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	// Messages published while a persistent session moves to a new
	// connection reach it (see resumeHook).
	resume := newResumeHook(srv, blog)
	if store != nil {
		resume.requeued = func(cl *mqtt.Client, moved packets.Packet) { store.OnQosPublish(cl, moved, time.Now().Unix(), 0) }
	}
	if err := srv.AddHook(resume, nil); err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded broker: %w", err)
	}
	if (cfg.TLSAddr == "") != (cfg.TLS == nil) {
		srv.Close()
		return nil, errors.New("embedded broker: give both TLSAddr and TLS, or neither")
	}
	// The listeners are bound here and handed to mochi (listeners.Net), so
	// there is no window between choosing a port and binding it, and every
	// accepted connection is tracked for Close (see trackListener).
	var tracked []*trackListener
	// With a store, connections hold a PUBACK until its journal entry is
	// committed (ackConn).
	withAcks := func(l net.Listener) net.Listener {
		if store == nil {
			return l
		}
		return ackListener{Listener: l, store: store}
	}
	fail := func(err error) (*Broker, error) {
		deadline := time.Now().Add(EstablishWait)
		for _, l := range tracked {
			waitStarted(l.stopAccepting(), deadline)
		}
		srv.Close() // stops the hooks, closing the store
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fail(fmt.Errorf("embedded broker listen on %s: %w", cfg.Addr, err))
	}
	addr := ln.Addr()
	tl := newTrackListener(ln)
	tracked = append(tracked, tl)
	if err := srv.AddListener(listeners.NewNet("tcp", withAcks(tl))); err != nil {
		return fail(fmt.Errorf("embedded broker listen on %s: %w", addr, err))
	}
	var tlsAddr net.Addr
	if cfg.TLSAddr != "" {
		ln, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			return fail(fmt.Errorf("embedded broker TLS listen on %s: %w", cfg.TLSAddr, err))
		}
		tlsAddr = ln.Addr()
		tl := newTrackListener(ln)
		tracked = append(tracked, tl)
		// TLS over the tracked listener: the handshake's first read marks
		// the connection started, in mochi's goroutine for it.
		if err := srv.AddListener(listeners.NewNet("tls", withAcks(tls.NewListener(tl, cfg.TLS)))); err != nil {
			return fail(fmt.Errorf("embedded broker TLS listen on %s: %w", tlsAddr, err))
		}
	}
	// Serve loads the store, starts the listeners and returns.
	if err := srv.Serve(); err != nil {
		return fail(fmt.Errorf("embedded broker: %w", err))
	}
	b := &Broker{srv: srv, addr: addr, tlsAddr: tlsAddr, store: store, log: log, listeners: tracked}
	if store != nil {
		n, err := store.replayJournal(srv)
		if err != nil {
			return fail(err)
		}
		b.Replayed = n
		if n > 0 {
			blog.Warn("embedded broker: published again the messages it had acknowledged but not yet queued when it last stopped (subscribers may see them twice)", "messages", n)
		}
		queued := 0
		for _, cl := range srv.Clients.GetAll() {
			queued += cl.State.Inflight.Len()
		}
		blog.Info("embedded broker: sessions restored from the store", "path", cfg.StorePath,
			"sessions", len(srv.Clients.GetAll()), "queued_messages", queued, "retained", len(srv.Topics.Retained.GetAll()))
	}
	if cfg.Registerer != nil {
		cs := []prometheus.Collector{newInfoCollector(srv, store), takeover.total, takeover.signals, resume.resumed}
		if store != nil {
			cs = append(cs, store.errors)
		}
		for _, c := range cs {
			if err := cfg.Registerer.Register(c); err != nil {
				return fail(fmt.Errorf("broker metrics: %w", err))
			}
		}
	}
	return b, nil
}

// TLSURL is the TLS listener's address for clients, e.g.
// "ssl://127.0.0.1:8883"; "" without a TLS listener.
func (b *Broker) TLSURL() string {
	if b.tlsAddr == nil {
		return ""
	}
	return "ssl://" + b.tlsAddr.String()
}

// URL is the broker's address for clients, e.g. "tcp://127.0.0.1:1883".
func (b *Broker) URL() string { return "tcp://" + b.addr.String() }

// Server returns the mochi server, e.g. for its inline client in tests.
func (b *Broker) Server() *mqtt.Server { return b.srv }

// Run serves until ctx is cancelled, then closes every connection.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	return b.Close()
}

// CloseTimeout bounds Close: mochi-mqtt v2.7.9's Server.Close waits for
// every client goroutine, and one stuck while its client is deleted never
// returns (mochi-mqtt/server#488, unreleased fix #489).
var CloseTimeout = 10 * time.Second

// Close stops the broker: listeners, clients, then the store. It is safe
// to call more than once.
//
// It first stops accepting and waits, at most EstablishWait, until mochi
// has begun handling every connection accepted before (so a shutdown
// during a connection storm does not race mochi's client WaitGroup; see
// trackListener). mochi then disconnects its clients; a connection still
// open ShutdownGrace later (one that has not sent its CONNECT, which mochi
// neither disconnects nor stops waiting for) is closed by Close. When the
// clients have not stopped CloseTimeout after that (a goroutine stuck
// elsewhere, mochi-mqtt/server#488), it closes the store itself (so the
// journal is flushed and the file released), logs the hang and returns an
// error saying so.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		deadline := time.Now().Add(EstablishWait)
		var left int
		for _, l := range b.listeners {
			left += waitStarted(l.stopAccepting(), deadline)
		}
		if left > 0 {
			b.log.Warn("embedded broker: connections accepted before shutdown were not yet handled; closing anyway", "connections", left, "waited", EstablishWait)
		}
		done := make(chan error, 1)
		go func() { done <- b.srv.Close() }()
		select {
		case err := <-done:
			done <- err
		case <-time.After(ShutdownGrace):
			var n atomic.Int64
			var wg sync.WaitGroup
			until := time.Now().Add(ackFlushWait + 100*time.Millisecond)
			for _, l := range b.listeners {
				wg.Go(func() { n.Add(int64(l.closeOpen(until))) })
			}
			wg.Wait()
			if n := n.Load(); n > 0 {
				b.log.Warn("embedded broker: closed connections still open after the clients were disconnected", "connections", n, "waited", ShutdownGrace)
			}
		}
		select {
		case err := <-done:
			if errors.Is(err, net.ErrClosed) {
				err = nil
			}
			b.closeErr = err
		case <-time.After(CloseTimeout):
			if b.store != nil {
				if err := b.store.Stop(); err != nil {
					b.log.Error("embedded broker: close store", "err", err)
				}
			}
			b.closeErr = fmt.Errorf("embedded broker: clients did not stop within %s of shutdown (mochi-mqtt/server#488); store closed, continuing", CloseTimeout)
			b.log.Error(b.closeErr.Error())
		}
	})
	return b.closeErr
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }

// infoCollector exports mochi's counters and the store's size.
type infoCollector struct {
	srv   *mqtt.Server
	store *storeHook
	descs map[string]*prometheus.Desc
}

var infoMetrics = []struct{ name, help string }{
	{"eldercare_broker_clients_connected", "MQTT clients connected to the embedded broker."},
	{"eldercare_broker_sessions", "Sessions the embedded broker holds, connected or not (persistent sessions are kept 24 h after their client leaves)."},
	{"eldercare_broker_queued_messages", "QoS 1/2 messages the embedded broker holds for its clients, sent and not yet acknowledged or waiting for the client to return (at most 64510 per client, each for at most 24 h)."},
	{"eldercare_broker_retained_messages", "Retained messages the embedded broker holds (with its own $SYS topics)."},
	{"eldercare_broker_queue_dropped_total", "QoS 1/2 messages the embedded broker could not queue for a client: its queue was full (64510) or they expired (24 h)."},
	{"eldercare_broker_messages_dropped_total", "Messages the embedded broker dropped because a client's write buffer was full."},
	{"eldercare_broker_store_bytes", "Size of the embedded broker's store file (DATA/broker/store.db) in bytes; 0 without a store."},
	{"eldercare_broker_journal_pending", "Messages acknowledged to their publisher and not yet queued for every subscriber (normally 0 or a handful; published again at start after a crash)."},
}

func newInfoCollector(srv *mqtt.Server, store *storeHook) *infoCollector {
	c := &infoCollector{srv: srv, store: store, descs: map[string]*prometheus.Desc{}}
	for _, m := range infoMetrics {
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, nil, nil)
	}
	return c
}

func (c *infoCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *infoCollector) Collect(ch chan<- prometheus.Metric) {
	i := c.srv.Info
	// mochi's Info.Inflight and Retained do not count what was loaded from
	// the store (and so go negative): count the sessions' queues instead.
	var queued int
	clients := c.srv.Clients.GetAll()
	for _, cl := range clients {
		queued += cl.State.Inflight.Len()
	}
	var size, pending float64
	if c.store != nil {
		size, pending = c.store.fileSize(), float64(c.store.pending.Load())
	}
	for name, v := range map[string]struct {
		t prometheus.ValueType
		v float64
	}{
		"eldercare_broker_clients_connected":      {prometheus.GaugeValue, float64(atomic.LoadInt64(&i.ClientsConnected))},
		"eldercare_broker_sessions":               {prometheus.GaugeValue, float64(len(clients))},
		"eldercare_broker_queued_messages":        {prometheus.GaugeValue, float64(queued)},
		"eldercare_broker_retained_messages":      {prometheus.GaugeValue, float64(len(c.srv.Topics.Retained.GetAll()))},
		"eldercare_broker_queue_dropped_total":    {prometheus.CounterValue, float64(atomic.LoadInt64(&i.InflightDropped))},
		"eldercare_broker_messages_dropped_total": {prometheus.CounterValue, float64(atomic.LoadInt64(&i.MessagesDropped))},
		"eldercare_broker_store_bytes":            {prometheus.GaugeValue, size},
		"eldercare_broker_journal_pending":        {prometheus.GaugeValue, pending},
	} {
		ch <- prometheus.MustNewConstMetric(c.descs[name], v.t, v.v)
	}
}
