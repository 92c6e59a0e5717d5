package influxd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// configTemplate is the influxd 1.8 config written by Start. Keys that are not set keep InfluxDB's defaults; the
// graphite, collectd, opentsdb and udp listeners are disabled by default in 1.8.
const configTemplate = `# Written by github.com/eldercare-iot/eldercare/internal/influxd; rewritten on every start.
reporting-disabled = true
bind-address = %[1]s

[meta]
  dir = %[2]s

[data]
  dir = %[3]s
  wal-dir = %[4]s
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = %[5]s
  auth-enabled = %[6]t
  log-enabled = false
  flux-enabled = true
  pprof-enabled = false

[logging]
  format = "logfmt"
  level = "info"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
`

// writeConfig creates dataDir/{meta,data,wal} (mode 0700: they hold health data) and writes dataDir/influxd.conf
// (mode 0600). It returns the config path.
func writeConfig(dataDir, httpAddr, rpcAddr string, auth bool) (string, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("influxd: create %s: %w", dataDir, err)
	}
	dirs := [3]string{filepath.Join(dataDir, "meta"), filepath.Join(dataDir, "data"), filepath.Join(dataDir, "wal")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("influxd: create %s: %w", d, err)
		}
	}
	cfg := fmt.Sprintf(configTemplate, tomlString(rpcAddr), tomlString(dirs[0]), tomlString(dirs[1]), tomlString(dirs[2]),
		tomlString(httpAddr), auth)
	path := filepath.Join(dataDir, "influxd.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("influxd: write config: %w", err)
	}
	return path, nil
}

// tomlString quotes s as a TOML basic string; strconv.Quote's escapes are a subset of TOML's for printable input.
func tomlString(s string) string { return strconv.Quote(s) }

// ReadAddrs returns the HTTP and RPC bind addresses from the influxd.conf that Start wrote into dataDir, so another
// process (`eldercare backup`) finds a running instance. Errors: no such file, or a file Start did not write.
func ReadAddrs(dataDir string) (httpAddr, rpcAddr string, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "influxd.conf"))
	if err != nil {
		return "", "", fmt.Errorf("influxd: %w", err)
	}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "bind-address" {
			continue
		}
		addr, err := strconv.Unquote(strings.TrimSpace(v))
		if err != nil {
			return "", "", fmt.Errorf("influxd: %s/influxd.conf: bind-address %s: %w", dataDir, v, err)
		}
		switch section {
		case "":
			rpcAddr = addr
		case "[http]":
			httpAddr = addr
		}
	}
	if httpAddr == "" || rpcAddr == "" {
		return "", "", fmt.Errorf("influxd: %s/influxd.conf names no http and rpc bind-address", dataDir)
	}
	return httpAddr, rpcAddr, nil
}
