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

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"
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
	// Registerer receives the broker's auth metrics
	// (eldercare_broker_connect_refused_total,
	// eldercare_broker_acl_denied_total); nil registers nothing.
	Registerer prometheus.Registerer
}

// Broker is a running embedded broker.
type Broker struct {
	srv     *mqtt.Server
	addr    net.Addr
	tlsAddr net.Addr
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
	// 65535 in-flight messages per client (mochi's maximum) so a slow
	// consumer is not dropped under a burst.
	caps.MaximumInflight = 65535
	caps.MaximumClientWritesPending = 64 * 1024
	caps.MaximumSessionExpiryInterval = 24 * 60 * 60
	srv := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// mochi logs every connection at info; keep warnings and errors.
		Logger:       slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "broker"),
		InlineClient: true,
	})
	if cfg.Auth == nil {
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	} else {
		h, err := newAuthHook(*cfg.Auth, log.With("component", "broker"), cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		if err := srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
	}
	if (cfg.TLSAddr == "") != (cfg.TLS == nil) {
		return nil, errors.New("embedded broker: give both TLSAddr and TLS, or neither")
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker listen on %s: %w", cfg.Addr, err)
	}
	addr := ln.Addr()
	ln.Close() // mochi binds it again below; the window is tiny and a clash is reported
	tcp := listeners.NewTCP(listeners.Config{Type: "tcp", ID: "tcp", Address: addr.String()})
	if err := srv.AddListener(tcp); err != nil {
		return nil, fmt.Errorf("embedded broker listen on %s: %w", addr, err)
	}
	var tlsAddr net.Addr
	if cfg.TLSAddr != "" {
		ln, err := net.Listen("tcp", cfg.TLSAddr)
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("embedded broker TLS listen on %s: %w", cfg.TLSAddr, err)
		}
		tlsAddr = ln.Addr()
		ln.Close()
		l := listeners.NewTCP(listeners.Config{Type: "tcp", ID: "tls", Address: tlsAddr.String(), TLSConfig: cfg.TLS})
		if err := srv.AddListener(l); err != nil {
			srv.Close()
			return nil, fmt.Errorf("embedded broker TLS listen on %s: %w", tlsAddr, err)
		}
	}
	go func() {
		if err := srv.Serve(); err != nil {
			log.Error("embedded broker stopped", "err", err)
		}
	}()
	return &Broker{srv: srv, addr: addr, tlsAddr: tlsAddr}, nil
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

// Close stops the broker. It is safe to call more than once.
func (b *Broker) Close() error {
	err := b.srv.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
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
