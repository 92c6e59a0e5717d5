#!/usr/bin/env bash
# Starts the services the integration tests use when they are not running:
# Mosquitto on 127.0.0.1:1883 and PostgreSQL on 127.0.0.1:5432 (database "test").
set -euo pipefail
# Also installs, when missing, Node.js + npm (for `make assets`) and Debian's
# chromium at /usr/bin/chromium and chromium-headless-shell (for the browser
# tests in dashboard/browser: the shell is the shared browser, about half the
# CPU of the full one; the alarm tests need the full one),
# systemd-analyze and promtool (for the deploy/ tests in cmd/eldercare) and
# goreleaser (for `make release-snapshot`).

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_root() { [ "$(id -u)" = 0 ] || { echo "services.sh: $1 is not running and I am not root to install/start it" >&2; exit 1; }; }

if ! command -v mosquitto >/dev/null 2>&1 && ! [ -x /usr/sbin/mosquitto ]; then
  need_root mosquitto
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
fi
if ! up 1883; then
  need_root mosquitto
  /usr/sbin/mosquitto -d -c /etc/mosquitto/mosquitto.conf
  for _ in $(seq 50); do up 1883 && break; sleep 0.1; done
fi
up 1883 && echo "mosquitto: 127.0.0.1:1883 up"

apt_missing=()
command -v npm >/dev/null 2>&1 || apt_missing+=(nodejs npm)
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
[ -x /usr/bin/chromium-headless-shell ] || apt_missing+=(chromium-headless-shell)
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
command -v promtool >/dev/null 2>&1 || apt_missing+=(prometheus)
# A Chinese font, so that the zh-CN board screenshot shows characters.
{ command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; } || apt_missing+=(fonts-wqy-microhei)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
  else
    # Not fatal: `make assets` names what it lacks, and the browser tests
    # skip without chromium (they fail under CI=true).
    echo "services.sh: missing ${apt_missing[*]} and I am not root to install them (apt-get install -y ${apt_missing[*]})" >&2
  fi
fi
echo "node: $(node --version 2>/dev/null || echo missing), npm: $(npm --version 2>/dev/null || echo missing), $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium: not runnable')"

if ! up 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    need_root postgresql
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 50); do up 5432 && break; sleep 0.2; done
  fi
fi
if up 5432; then echo "postgresql: 127.0.0.1:5432 up"; else echo "postgresql: not running; PostgreSQL tests will skip (they fail under CI=true)"; fi

# goreleaser, pinned (the Makefile's GORELEASER_VERSION); about 3 minutes to build.
gr_version="$(sed -n 's/^GORELEASER_VERSION := //p' "$(dirname "$0")/../Makefile")"
if ! command -v goreleaser >/dev/null 2>&1 && ! [ -x "$(go env GOPATH)/bin/goreleaser" ]; then
  echo "services.sh: installing goreleaser $gr_version"
  go install "github.com/goreleaser/goreleaser/v2@$gr_version"
fi
