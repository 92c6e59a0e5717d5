package influxd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
  auth-enabled = false
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

// writeConfig creates dataDir/{meta,data,wal} and writes dataDir/influxd.conf. It returns the config path.
func writeConfig(dataDir, httpAddr, rpcAddr string) (string, error) {
	dirs := [3]string{filepath.Join(dataDir, "meta"), filepath.Join(dataDir, "data"), filepath.Join(dataDir, "wal")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("influxd: create %s: %w", d, err)
		}
	}
	cfg := fmt.Sprintf(configTemplate, tomlString(rpcAddr), tomlString(dirs[0]), tomlString(dirs[1]), tomlString(dirs[2]),
		tomlString(httpAddr))
	path := filepath.Join(dataDir, "influxd.conf")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", fmt.Errorf("influxd: write config: %w", err)
	}
	return path, nil
}

// tomlString quotes s as a TOML basic string; strconv.Quote's escapes are a subset of TOML's for printable input.
func tomlString(s string) string { return strconv.Quote(s) }
