#!/usr/bin/env bash
# Soak: steady load on /v1/check for DURATION seconds; RSS of the server every 30 s.
# Event time advances ~300 s per wall second, so entities expire during the run
# and memory must level off. Usage: detector/bench/soak.sh [DURATION_S] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-600}
CONN=${2:-1}
PORT=18090
./target/release/haechi serve --listen 127.0.0.1:$PORT 2>/tmp/haechi-soak.log &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
sleep 1
wrk -t1 -c"$CONN" -d"${DURATION}s" --latency -s detector/bench/check.lua http://127.0.0.1:$PORT > /tmp/haechi-soak-wrk.txt 2>&1 &
WRK=$!
for ((t = 0; t <= DURATION; t += 30)); do
  printf '%5ds  RSS %6d KiB  ' "$t" "$(ps -o rss= -p $PID)"
  curl -s localhost:$PORT/metrics | awk '/^haechi_entities/ {n += $2} /^haechi_decisions_total/ {d += $2} END {printf "entities %d  decisions %d\n", n, d}'
  sleep 30
done
wait $WRK || true
grep -E "50%|99%|Requests/sec" /tmp/haechi-soak-wrk.txt
