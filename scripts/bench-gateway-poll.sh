#!/usr/bin/env bash
# Gateway RSS and CPU while polling 100 Modbus registers/s: five emulated
# Eastron SDM120 meters (20 registers each) polled every second over Modbus
# TCP on loopback, readings spooled and sent to a broker. Usage:
#   scripts/bench-gateway-poll.sh [SECONDS]   (default 60; needs bin/eldercare and mosquitto)
set -euo pipefail
secs=${1:-60}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mb=$(port); mq=$(port); hp=$(port)
sed 's/^poll_interval: .*/poll_interval: 1s/' device/modbus/profiles/sdm120.yaml > "$dir/sdm120-1s.yaml"
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mq" > "$dir/mosquitto.conf"
mosquitto -c "$dir/mosquitto.conf" >/dev/null 2>&1 &
./bin/eldercare sim modbus --listen 127.0.0.1:$mb --device sdm120@1,sdm120@2,sdm120@3,sdm120@4,sdm120@5 --log-level warn &
{
  echo "id: gw-bench"; echo "site: bench"; echo "modbus:"; echo "  buses:"
  echo "    - {name: meters, transport: tcp, address: 127.0.0.1:$mb, timeout: 1s, devices: ["
  for i in 1 2 3 4 5; do echo "        {id: meter-$i, profile: $dir/sdm120-1s.yaml, slave: $i},"; done
  echo "      ]}"
} > "$dir/gateway.yaml"
sleep 1
./bin/eldercare gateway --gateway-config "$dir/gateway.yaml" --mqtt tcp://127.0.0.1:$mq --spool "$dir/spool.db" --http 127.0.0.1:$hp --log-level warn &
gw=$!
sleep 5   # warm-up
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$gw/stat; }
c0=$(cpu); t0=$(date +%s.%N)
sleep "$secs"
c1=$(cpu); t1=$(date +%s.%N)
polls=$(curl -s 127.0.0.1:$hp/metrics | awk '/^eldercare_gateway_modbus_polls_total/ && /result="ok"/ {s+=$2} END {print s+0}')
rss=$(awk '/VmRSS/ {print $2}' /proc/$gw/status); hwm=$(awk '/VmHWM/ {print $2}' /proc/$gw/status)
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tick="$tick" -v rss="$rss" -v hwm="$hwm" -v polls="$polls" 'BEGIN {
  cpu=(c1-c0)/tick; wall=t1-t0
  printf "window %.0f s: CPU %.2f s (%.2f %% of one core), RSS %d kB, peak RSS %d kB, successful device polls so far %d\n", wall, cpu, 100*cpu/wall, rss, hwm, polls }'
