#!/usr/bin/env bash
# Two replicas on a real Fluvio cluster, one killed with SIGKILL mid-stream
# and restarted; then both replicas' decision and alert topics, deduplicated
# by key, against a single-node `haechi replay` of the same stream.
#
# Needs a running cluster (ENDPOINT, default 127.0.0.1:9003); see
# BENCHMARKS.md, "Fluvio", for how one was built and started by hand.
#
#   detector/bench/fluvio-replicas.sh [EVENTS] [CUSTOMERS]
set -euo pipefail

ENDPOINT=${ENDPOINT:-127.0.0.1:9003}
DAYS=${1:-7}
CUSTOMERS=${2:-50000}
HAECHI=${HAECHI:-target/release/haechi}
WORK=$(mktemp -d /tmp/haechi-fluvio.XXXXXX)
RUN=$(date +%s)
T_EVENTS=ekyc-events-$RUN

echo "work dir: $WORK" >&2
"$HAECHI" generate --seed 42 --days "$DAYS" --customers "$CUSTOMERS" --out "$WORK/events.jsonl" --labels "$WORK/labels.jsonl" >&2
EVENTS=$(wc -l < "$WORK/events.jsonl")
echo "stream: $EVENTS events" >&2

"$HAECHI" fluvio --endpoint "$ENDPOINT" create-topic "$T_EVENTS:2" "$T_EVENTS-dead:1" \
    "decisions-a-$RUN:2" "alerts-a-$RUN:1" "decisions-b-$RUN:2" "alerts-b-$RUN:1" "blocks-$RUN:1" >&2

config() { # replica
    cat > "$WORK/$1.toml" <<EOF
[server]
listen = "127.0.0.1:0"
watch_files = false

[source.fluvio]
endpoint = "$ENDPOINT"
topic = "$T_EVENTS"
dead_letter_topic = "$T_EVENTS-dead"

[sinks.fluvio]
decisions_topic = "decisions-$1-$RUN"
alerts_topic = "alerts-$1-$RUN"
blocks_topic = "blocks-$RUN"

[storage]
snapshot_every_events = 100000

[replica]
id = "$1"
EOF
}
config a
config b

start() { # replica -> pid
    "$HAECHI" --config "$WORK/$1.toml" serve --data-dir "$WORK/data-$1" >>"$WORK/$1.log" 2>&1 &
    echo $!
}
port() { # replica
    for _ in $(seq 1 600); do
        p=$(grep -o 'listening on [0-9.:]*' "$WORK/$1.log" 2>/dev/null | tail -1 | sed 's/.*://' || true)
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.1
    done
    echo "replica $1 did not start" >&2; exit 1
}
consumed() { # replica -> events decided so far (sum of consumer positions)
    curl -s "http://127.0.0.1:$(port "$1")/metrics" | awk '/^haechi_consumed_total/ {print $2}' | head -1 || true
}

A=$(start a); B=$(start b)
port a >/dev/null; port b >/dev/null
started=$(date +%s.%N)
"$HAECHI" fluvio --endpoint "$ENDPOINT" produce --topic "$T_EVENTS" "$WORK/events.jsonl" >&2 &
PRODUCER=$!

# Kill replica a once it has decided a third of the stream.
while :; do
    c=$(consumed a || echo 0); c=${c%.*}
    [ "${c:-0}" -ge $((EVENTS / 3)) ] && break
    sleep 0.2
done
kill -9 "$A"
# Started in a subshell, so not ours to `wait` for: poll until it is gone
# (its data dir's lock goes with it).
while kill -0 "$A" 2>/dev/null; do sleep 0.05; done
echo "replica a killed after ~$c events; restarting" >&2
: > "$WORK/a.log"
A=$(start a)
port a >/dev/null
wait "$PRODUCER"
# Lag is reported every 5 s: let a report see the whole topic.
sleep 6

# Both replicas at the end of the topic: lag 0 on both partitions.
lag() { curl -s "http://127.0.0.1:$(port "$1")/metrics" | awk '/^haechi_consumer_lag/ {s += $2} END {print s + 0}'; }
spool() { curl -s "http://127.0.0.1:$(port "$1")/metrics" | awk '/^haechi_spool_depth/ {print $2}'; }
for r in a b; do
    while :; do
        l=$(lag $r); s=$(spool $r)
        [ "$l" = 0 ] && [ "${s:-1}" = 0 ] && [ "$(consumed $r)" != 0 ] && break
        sleep 1
    done
done
finished=$(date +%s.%N)
echo "both replicas at the end of the topic in $(echo "$finished - $started" | bc) s" >&2
grep -h "state recovered\|snapshot refused\|rebuilding" "$WORK/a.log" >&2 || true

for r in a b; do
    "$HAECHI" fluvio --endpoint "$ENDPOINT" dump --topic "decisions-$r-$RUN" --out "$WORK/decisions-$r.jsonl"
    "$HAECHI" fluvio --endpoint "$ENDPOINT" dump --topic "alerts-$r-$RUN" --out "$WORK/alerts-$r.jsonl"
done
"$HAECHI" replay "$WORK/events.jsonl" --decisions "$WORK/replay-decisions.jsonl" --alerts "$WORK/replay-alerts.jsonl" 2>"$WORK/replay.log"

python3 - "$WORK" <<'EOF'
import json, sys
w = sys.argv[1]
def by(path, key):
    return {json.loads(l)[key]: json.loads(l) for l in open(path) if l.strip()}
replay = by(f"{w}/replay-decisions.jsonl", "event_id")
replay_alerts = set(by(f"{w}/replay-alerts.jsonl", "id"))
for r in "ab":
    d = by(f"{w}/decisions-{r}.jsonl", "event_id")
    same = sum(1 for k, v in d.items() if replay.get(k, {}).get("decision") == v["decision"])
    missing = len(set(replay) - set(d))
    extra = len(set(d) - set(replay))
    alerts = set(by(f"{w}/alerts-{r}.jsonl", "id"))
    print(f"replica {r}: {len(d)} decisions (replay {len(replay)}), missing {missing}, extra {extra}, "
          f"same verdict {same} ({100 * same / max(1, len(replay)):.3f}%); "
          f"alerts {len(alerts)} (replay {len(replay_alerts)}), only here {len(alerts - replay_alerts)}, only in replay {len(replay_alerts - alerts)}")
EOF
kill "$A" "$B" 2>/dev/null || true
wait 2>/dev/null || true
