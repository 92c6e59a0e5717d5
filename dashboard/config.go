package dashboard

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/eldercare-iot/eldercare/device"
)

// Config configures the dashboard role.
type Config struct {
	// HTTPAddr is the listen address, host:port, e.g. "127.0.0.1:8080".
	HTTPAddr string
	// APIToken is the bearer token of the JSON API (/api/v1) for machine
	// clients; browsers log in with accounts (see Accounts). Secret: String
	// never prints it. At least 16 characters.
	APIToken string
	// MQTTURL is the broker of the live feed (tcp://host:1883); empty when
	// Deps.Live is given.
	MQTTURL string
	// Root is the topic root ("" = device.DefaultRoot).
	Root string
	// ClientID is the live feed's MQTT client id.
	ClientID string
	// InfluxURL, InfluxToken ("" or "user:pass") and InfluxBucket
	// ("database/retention-policy", default "eldercare/autogen") locate the
	// vitals history; used when Deps.Vitals is nil.
	InfluxURL    string
	InfluxToken  string
	InfluxBucket string
	// SecureCookies marks the session cookie Secure (set it behind TLS).
	SecureCookies bool
	// TrustedProxies are the IP addresses or CIDR ranges of reverse
	// proxies whose X-Real-IP header names the client (for the login rate
	// limit and the audit log). Such a proxy must overwrite X-Real-IP with
	// the client's address (nginx: proxy_set_header X-Real-IP $remote_addr).
	// Empty: the TCP peer is the client and X-Real-IP is ignored.
	TrustedProxies []string
	// SSEHeartbeat is the interval of the SSE keep-alive comment; 0 = 15 s.
	SSEHeartbeat time.Duration
	// SessionTTL is the lifetime of a browser session; 0 = 12 h.
	SessionTTL time.Duration
	// SessionIdle ends a session after this long without a request (an
	// open live stream counts as use); 0 = 30 min (OWASP Session
	// Management Cheat Sheet: 15-30 min for low-risk applications).
	SessionIdle time.Duration
	// SessionCheck is how often an open live stream re-reads its session
	// in the store, so a logout on another replica ends it; 0 = 5 s.
	SessionCheck time.Duration
	// BodyLimit caps a request body in bytes; 0 = 64 KiB.
	BodyLimit int
	// MapTiles is a raster tile server's URL template for the resident
	// page's map of safe zones and track, for example
	// https://tiles.example.org/{z}/{x}/{y}.png (see ParseTileURL); ""
	// draws the zones without a map. Browsers fetch the tiles directly.
	MapTiles string
	// MapAttribution is the credit the tile server's terms require
	// ("© OpenStreetMap contributors"), drawn on the map.
	MapAttribution string
}

// DefaultBucket is the vitals bucket when Config.InfluxBucket is empty.
const DefaultBucket = "eldercare/autogen"

// MinTokenLen is the shortest accepted API token.
const MinTokenLen = 16

// String renders the config without the API token and the InfluxDB token.
func (c Config) String() string {
	tok := func(s string) string {
		if s == "" {
			return "(unset)"
		}
		return "(redacted)"
	}
	mqtt := c.MQTTURL
	if u, err := url.Parse(mqtt); err == nil {
		mqtt = u.Redacted()
	}
	return fmt.Sprintf("dashboard.Config{HTTPAddr:%q APIToken:%s MQTTURL:%q Root:%q ClientID:%q InfluxURL:%q InfluxToken:%s InfluxBucket:%q SecureCookies:%t}",
		c.HTTPAddr, tok(c.APIToken), mqtt, c.Root, c.ClientID, c.InfluxURL, tok(c.InfluxToken), c.InfluxBucket, c.SecureCookies)
}

// GoString is String, so %#v does not print the secrets either.
func (c Config) GoString() string { return c.String() }

// withDefaults fills the zero values.
func (c Config) withDefaults() Config {
	if c.InfluxBucket == "" {
		c.InfluxBucket = DefaultBucket
	}
	if c.SSEHeartbeat <= 0 {
		c.SSEHeartbeat = 15 * time.Second
	}
	if c.SessionIdle <= 0 {
		c.SessionIdle = 30 * time.Minute
	}
	if c.SessionCheck <= 0 {
		c.SessionCheck = 5 * time.Second
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.BodyLimit <= 0 {
		c.BodyLimit = 64 << 10
	}
	return c
}

// Validate reports every problem of the config. liveGiven and vitalsGiven
// say whether the MQTT and InfluxDB settings are needed.
func (c Config) validate(liveGiven, vitalsGiven bool) error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http address %q: want host:port: %w", c.HTTPAddr, err))
	}
	if len(c.APIToken) < MinTokenLen {
		errs = append(errs, fmt.Errorf("api token: %d characters, need at least %d (set --api-token or ELDERCARE_API_TOKEN)", len(c.APIToken), MinTokenLen))
	}
	if strings.TrimSpace(c.APIToken) != c.APIToken {
		errs = append(errs, errors.New("api token: leading or trailing white space"))
	}
	if err := device.ValidateRoot(c.Root); err != nil {
		errs = append(errs, fmt.Errorf("topic root: %w", err))
	}
	if !liveGiven {
		if c.MQTTURL == "" {
			errs = append(errs, errors.New("mqtt url: required (tcp://host:1883)"))
		}
		if c.ClientID == "" {
			errs = append(errs, errors.New("mqtt client id: required"))
		}
	}
	if !vitalsGiven && c.InfluxURL == "" {
		errs = append(errs, errors.New("influx url: required (http://host:8086)"))
	}
	if b := c.InfluxBucket; b != "" && !strings.Contains(b, "/") {
		errs = append(errs, fmt.Errorf("influx bucket %q: want database/retention-policy, e.g. %s", b, DefaultBucket))
	}
	for _, p := range c.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				errs = append(errs, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR range such as 10.0.0.0/8", p))
			}
		}
	}
	if c.MapTiles != "" {
		if _, err := ParseTileURL(c.MapTiles); err != nil {
			errs = append(errs, err)
		}
	}
	if c.BodyLimit < 0 {
		errs = append(errs, fmt.Errorf("body limit %d: negative", c.BodyLimit))
	}
	return errors.Join(errs...)
}

// Validate reports every problem of a config that must stand on its own
// (MQTT and InfluxDB settings required).
func (c Config) Validate() error { return c.validate(false, false) }
