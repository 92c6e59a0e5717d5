// Package mqttconn opens paho MQTT connections the way every platform
// service wants them: QoS 1 friendly defaults, automatic reconnect with
// subscriptions made again in OnConnect, bounded waits, clear errors.
package mqttconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Options configures one connection.
type Options struct {
	// URL of the broker: tcp://host:1883, mqtt://host:1883 (same as tcp),
	// ssl://host:8883 or ws://host/path. User and password may be in it.
	URL      string
	ClientID string
	// CleanSession false keeps a persistent session: the broker queues QoS 1
	// messages for the client while it is away.
	CleanSession bool
	// Will, if set, is the last will the broker publishes when the
	// connection is lost (QoS 1, retained).
	WillTopic   string
	WillPayload []byte
	// OnConnect runs after every (re)connect; make subscriptions there so
	// they are renewed after a broker restart.
	OnConnect func(paho.Client)
	// AutoAckDisabled makes the caller acknowledge QoS 1 messages itself
	// (Message.Ack) once they are stored.
	AutoAckDisabled bool
	// DefaultHandler receives messages that match no subscription made on
	// this connection yet: with a persistent session the broker sends the
	// queued messages right after CONNACK, before OnConnect has subscribed
	// again. Services with persistent sessions must set it.
	DefaultHandler paho.MessageHandler
	// OrderMatters delivers messages to the handlers one at a time in
	// arrival order. A handler must then never block for long (paho's
	// keepalive waits behind it). When false, each message runs in its own
	// goroutine.
	OrderMatters bool
	// Store keeps paho's copies of unacknowledged QoS 1 messages; nil is
	// paho's memory store. A client that keeps its own durable copy (the
	// gateway's spool) passes NoStore, so paho never resends behind its back.
	Store paho.Store
	// Acker, if set, acknowledges messages in batches (see Acker; use
	// with AutoAckDisabled). paho then keeps no store: give it to a client
	// that only subscribes.
	Acker *Acker
	// Direct, if set, receives every QoS 0 and QoS 1 message the broker
	// sends, read from the connection in paho's reading goroutine, one at
	// a time in arrival order, instead of through paho's goroutines, router
	// and handlers (direct.go; docs/speed.md). Neither DefaultHandler nor a
	// subscription's handler sees those messages; paho still makes the
	// connection, the subscriptions, the keepalive and the reconnects, and
	// gets QoS 2 messages. It must never block (paho's keepalive waits
	// behind it) and must not keep the message's Payload past its
	// acknowledgement if it modifies it (it must not). It applies only to
	// the connections Connect opens itself: tcp:// and ssl:// with an
	// Acker that is not Plain; otherwise messages go to the handlers as
	// usual, so set DefaultHandler to the same function.
	Direct func(paho.Message)
	// ReadDelay, if set, lets incoming data gather while messages flow,
	// so that a steady stream of small messages costs one system call and
	// one wake-up per delay (or per 32 KiB) instead of one per message: on
	// Linux with a socket low-water mark (lowat.go), elsewhere by sleeping
	// the delay before a read that follows a short one. The first message
	// after a quiet spell is read at once; later ones wait up to the
	// delay: for a batching subscriber (ingest), not for one that reacts
	// to single messages.
	ReadDelay time.Duration
	// MaxInflight bounds the messages paho buffers for the handler; 0 = 1000.
	MaxInflight int
	// ConnectTimeout bounds the first connection; 0 = 10 s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger

	// TLS, for ssl:// (mqtts://, wss://) URLs. All optional; with none set
	// the system's CA pool and the URL's host name are used, as before.
	//
	// TLSCAFile is a PEM file of the CA(s) that signed the broker's
	// certificate (e.g. a site's own CA); it replaces the system pool.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a PEM client certificate and key, for
	// brokers that require client certificates. Give both or neither.
	TLSCertFile, TLSKeyFile string
	// TLSServerName overrides the name checked in the broker's
	// certificate (when the URL names an IP address, for example).
	TLSServerName string
}

// TLSConfig builds the client TLS configuration of o; nil when o sets no TLS
// option. Errors name the file that failed.
func (o Options) TLSConfig() (*tls.Config, error) {
	if o.TLSCAFile == "" && o.TLSCertFile == "" && o.TLSKeyFile == "" && o.TLSServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt tls ca file %s: no PEM certificate in it", o.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return nil, errors.New("mqtt tls: give both the client certificate and its key, or neither")
	}
	if o.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls client certificate %s: %w", o.TLSCertFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// directFor returns o.Direct when it applies (with an Acker that is not
// Plain), else nil.
func (o Options) directFor() func(paho.Message) {
	if o.Acker == nil || o.Acker.Plain || o.Acker.PlainReceive {
		return nil
	}
	return o.Direct
}

// Connect opens the connection and waits for the first CONNACK. The
// returned client reconnects by itself afterwards. Errors name the broker
// URL without its password.
func Connect(ctx context.Context, o Options) (paho.Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt url %q: want tcp://host:port, ssl://host:port or ws://host:port/path", o.URL)
	}
	if u.Scheme == "mqtt" {
		u.Scheme = "tcp"
	}
	if u.Scheme == "mqtts" {
		u.Scheme = "ssl"
	}
	tlsCfg, err := o.TLSConfig()
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	inflight := o.MaxInflight
	if inflight <= 0 {
		inflight = 1000
	}
	redacted := u.Redacted()
	opts := paho.NewClientOptions().
		AddBroker(u.Scheme + "://" + u.Host + u.Path).
		SetClientID(o.ClientID).
		SetCleanSession(o.CleanSession).
		SetOrderMatters(o.OrderMatters).
		SetDefaultPublishHandler(o.DefaultHandler).
		SetAutoReconnect(true).
		SetConnectRetry(false).
		SetMaxReconnectInterval(5 * time.Second).
		SetConnectTimeout(timeout).
		SetWriteTimeout(10 * time.Second).
		SetKeepAlive(30 * time.Second).
		SetAutoAckDisabled(o.AutoAckDisabled).
		SetMessageChannelDepth(uint(inflight)).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			log.Warn("mqtt connection lost; reconnecting", "broker", redacted, "client", o.ClientID, "err", err)
		}).
		SetOnConnectHandler(func(c paho.Client) {
			log.Debug("mqtt connected", "broker", redacted, "client", o.ClientID)
			if o.OnConnect != nil {
				o.OnConnect(c)
			}
		})
	if o.Store != nil {
		opts.SetStore(o.Store)
	}
	plain := o.Acker != nil && o.Acker.Plain
	switch u.Scheme {
	case "tcp", "ssl":
		// Buffered reads and coalesced writes (bufconn.go); ws:// and a
		// plain Acker keep paho's own dialler.
		if !plain {
			opts.SetCustomOpenConnectionFn(openBuffered(o.Acker, o.ReadDelay, o.directFor()))
		}
	}
	if o.Acker != nil && !plain {
		// The acker writes PUBACKs itself, past paho's store.
		opts.SetStore(NoStore{})
	}
	if u.User != nil {
		opts.SetUsername(u.User.Username())
		if p, ok := u.User.Password(); ok {
			opts.SetPassword(p)
		}
	}
	if tlsCfg != nil {
		opts.SetTLSConfig(tlsCfg)
	}
	if o.WillTopic != "" {
		opts.SetBinaryWill(o.WillTopic, o.WillPayload, 1, true)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		c.Disconnect(0)
		return nil, ctx.Err()
	case <-time.After(timeout + time.Second):
		c.Disconnect(0)
		return nil, fmt.Errorf("mqtt connect to %s as %s: no answer within %s", redacted, o.ClientID, timeout)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("mqtt connect to %s as %s: %w", redacted, o.ClientID, err)
	}
	return track(o.ClientID, c), nil
}

// Wait waits for tok with a deadline: no publish or subscribe waits
// forever. what names the operation in the error.
func Wait(ctx context.Context, tok paho.Token, timeout time.Duration, what string) error {
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", what, ctx.Err())
	case <-time.After(timeout):
		return fmt.Errorf("%s: no answer from the broker within %s", what, timeout)
	}
}

// NoStore is a paho.Store that keeps nothing: after a reconnect paho
// resends no publish of its own; the caller resends from its own store.
type NoStore struct{}

func (NoStore) Open()                             {}
func (NoStore) Put(string, packets.ControlPacket) {}
func (NoStore) Get(string) packets.ControlPacket  { return nil }
func (NoStore) All() []string                     { return nil }
func (NoStore) Del(string)                        {}
func (NoStore) Close()                            {}
func (NoStore) Reset()                            {}
