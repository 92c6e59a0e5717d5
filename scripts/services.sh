#!/usr/bin/env bash
# Starts the services the integration tests use when they are not running:
# Mosquitto on 127.0.0.1:1883 and PostgreSQL on 127.0.0.1:5432 (database "test").
set -euo pipefail

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

if ! up 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    need_root postgresql
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    for _ in $(seq 50); do up 5432 && break; sleep 0.2; done
  fi
fi
if up 5432; then echo "postgresql: 127.0.0.1:5432 up"; else echo "postgresql: not running; PostgreSQL tests will skip (they fail under CI=true)"; fi
