#!/usr/bin/env bash
# Haechi replay vs CrowdSec (Debian's 1.4.6, forensic mode) on the same generated
# stream, in one sitting, alternating, on this machine. Prints events (lines) per
# wall second and per CPU-second (user+sys) for each round, the medians, and the
# ratio Haechi/CrowdSec per CPU-second. CPU-seconds are the figure to quote: wall
# time on a shared 2-core box moves with the neighbours, CPU time much less.
#
# Usage: detector/bench/crowdsec.sh
#   env HAECHI (default target/release/haechi under the repo root), DAYS (5),
#   CUSTOMERS (50000), WORLD_SEED (2001), ROUNDS (3), MIN_PARSED_PCT (99).
# Needs: python3, dpkg-deb, apt-get (only when no cached .deb), GNU time or bash.
# Network: loopback only, apart from `apt-get download crowdsec` (cached after).
#
# How CrowdSec runs (and why):
# - The agent is the measured process: `crowdsec -dsn file://auth.log -type syslog
#   -no-api` reads the file once (time-machine mode: buckets follow the lines' own
#   timestamps) and exits when it is done. Prometheus is off in the timed rounds,
#   the cheapest setting for CrowdSec.
# - 1.4.6's agent cannot run alone: even with -no-api it logs in to a local API
#   before it starts (and dies if it cannot). So a separate `crowdsec -no-cs`
#   serves the local API on a free loopback port, with its sqlite database in the
#   temp folder, for the whole benchmark; it is not timed (it only stores alerts).
# - Before timing, two untimed checks: (1) a canary of ten fast failures from one
#   address and ten slow ones from another must give exactly one ssh-bf overflow,
#   for the fast one, so ssh-bf works and runs in the lines' time, not the wall
#   clock's; (2) a verification pass over the stream with Prometheus on, fed
#   through a FIFO that stays open until the counters show every line parsed
#   (the agent quits as soon as its input ends, before anything could read its
#   metrics), gives the parsed/unparsed counts and the overflows.
set -euo pipefail

die() { echo "bench-crowdsec: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HAECHI=${HAECHI:-$REPO/target/release/haechi}
DAYS=${DAYS:-5}
CUSTOMERS=${CUSTOMERS:-50000}
WORLD_SEED=${WORLD_SEED:-2001}
ROUNDS=${ROUNDS:-3}
MIN_PARSED_PCT=${MIN_PARSED_PCT:-99}
CONVERT=$REPO/detector/bench/events-to-sshd.py
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/haechi-bench

[[ -x $HAECHI ]] || die "no haechi binary at $HAECHI (build it, or set HAECHI=path)"
command -v python3 >/dev/null || die "python3 is needed"
command -v dpkg-deb >/dev/null || die "dpkg-deb is needed to unpack CrowdSec"
[[ -f $CONVERT ]] || die "missing $CONVERT"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"

T=$(mktemp -d -t haechi-bench-cs.XXXXXX)
LAPI_PID=
cleanup() {
  set +e  # best effort: one failed kill/wait must not skip the rest
  # Only the processes this script started, by pid.
  [[ -n $LAPI_PID ]] && kill "$LAPI_PID" 2>/dev/null && wait "$LAPI_PID" 2>/dev/null
  [[ -n ${VERIFY_PID:-} ]] && kill "$VERIFY_PID" 2>/dev/null
  [[ -n ${FEED_PID:-} ]] && kill "$FEED_PID" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# timed OUT CMD...: run CMD, write "wall user sys" (seconds) to OUT, return CMD's status.
# GNU time when present; otherwise bash's own `time` with the same three figures.
if [[ -x /usr/bin/time ]]; then
  timed() { local out=$1; shift; /usr/bin/time -o "$out.raw" -f '%e %U %S' "$@"; local rc=$?; tail -n1 "$out.raw" >"$out"; return $rc; }
else
  timed() {
    local out=$1; shift; local rc TIMEFORMAT='%R %U %S'
    { time "$@" 2>&3; } 3>&2 2>"$out"; rc=$?  # the command's stderr goes to fd 3, time's to $out
    return $rc
  }
fi

# Thousands separators without relying on a locale being installed.
commas() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'; }

# prom URL NAME [LABEL_SUBSTRING]: sum of a Prometheus counter's samples (0 if absent).
prom() {
  python3 - "$@" <<'PY'
import sys, urllib.request
url, name = sys.argv[1], sys.argv[2]
want = sys.argv[3] if len(sys.argv) > 3 else ""
try:
    text = urllib.request.urlopen(url, timeout=2).read().decode()
except Exception:
    print(-1); sys.exit()
total = 0.0
for line in text.splitlines():
    if line.startswith(name + "{") or line.startswith(name + " "):
        labels = line[len(name):line.rfind(" ")]
        if want in labels:
            total += float(line.rsplit(" ", 1)[1])
print(int(total))
PY
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------- 1. the stream
echo "generating the stream (random world $WORLD_SEED, $DAYS days, $CUSTOMERS customers) ..." >&2
"$HAECHI" generate --world random --world-seed "$WORLD_SEED" --seed 7 --days "$DAYS" \
  --customers "$CUSTOMERS" --out "$T/events.jsonl" --labels "$T/labels.jsonl" >&2 \
  || die "haechi generate failed"
EVENTS=$(wc -l <"$T/events.jsonl")
(( EVENTS > 0 )) || die "the generated stream is empty"

python3 "$CONVERT" "$T/events.jsonl" >"$T/auth.log" 2>"$T/convert.txt" || die "events-to-sshd.py failed: $(cat "$T/convert.txt")"
LINES=$(wc -l <"$T/auth.log")
read -r _ _ _ FAILURES _ BURST BURST_IP <"$T/convert.txt"
(( LINES == EVENTS )) || die "sshd lines ($LINES) != events ($EVENTS)"

# ---------------------------------------------------------------- 2. CrowdSec, unpacked into $T
mkdir -p "$CACHE"
DEB=$(ls -t "$CACHE"/crowdsec_*.deb 2>/dev/null | head -n1 || true)
if [[ -z $DEB ]]; then
  echo "downloading crowdsec from the Debian archive (cached in $CACHE) ..." >&2
  command -v apt-get >/dev/null || die "no cached crowdsec .deb in $CACHE and no apt-get to fetch one"
  (cd "$T" && apt-get download crowdsec >&2) || die "apt-get download crowdsec failed (apt-get update first?)"
  DEB=$(ls "$T"/crowdsec_*.deb | head -n1)
  cp "$DEB" "$CACHE/" && DEB=$CACHE/$(basename "$DEB")
fi
dpkg-deb -x "$DEB" "$T/root" || die "cannot unpack $DEB"
CS=$T/root/usr/bin/crowdsec
CSCLI=$T/root/usr/bin/cscli
HUB=$T/root/usr/share/crowdsec/hub
[[ -x $CS && -x $CSCLI ]] || die "$DEB has no usr/bin/crowdsec or usr/bin/cscli"
CS_VERSION=$("$CS" -version 2>&1 | awk '/version:/ { print $NF; exit }')

# A minimal configuration: only the three parsers and the ssh-bf scenarios, linked
# from the package's hub (the hub index then counts them as installed, which the
# agent needs to log in), everything writable inside $C.
C=$T/cs
mkdir -p "$C"/{parsers/s00-raw,parsers/s01-parse,parsers/s02-enrich,scenarios,data,log,run}
ln -s "$HUB/parsers/s00-raw/crowdsecurity/syslog-logs.yaml" "$C/parsers/s00-raw/"
ln -s "$HUB/parsers/s01-parse/crowdsecurity/sshd-logs.yaml" "$C/parsers/s01-parse/"
ln -s "$HUB/parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml" "$C/parsers/s02-enrich/"
ln -s "$HUB/scenarios/crowdsecurity/ssh-bf.yaml" "$C/scenarios/"
ln -s "$T/root/etc/crowdsec/patterns" "$C/patterns"
cp "$T/root/etc/crowdsec/profiles.yaml" "$C/"   # the local API wants its profiles
echo 'simulation: off' >"$C/simulation.yaml"
: >"$C/acquis.yaml"                            # the file comes from -dsn
LAPI_PORT=$(free_port)
write_config() {  # write_config FILE PROMETHEUS(true|false) PROM_PORT
  cat >"$1" <<EOF
common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: $C/log
  working_dir: $C/run
config_paths:
  config_dir: $C
  data_dir: $C/data
  simulation_path: $C/simulation.yaml
  hub_dir: $HUB
  index_path: $HUB/.index.json
  notification_dir: $C/notifications
  plugin_dir: $T/root/usr/lib/crowdsec/plugins
crowdsec_service:
  acquisition_path: $C/acquis.yaml
  parser_routines: 1
cscli:
  output: human
db_config:
  type: sqlite
  db_path: $C/data/crowdsec.db
  use_wal: true
  log_level: warning
api:
  client:
    credentials_path: $C/local_api_credentials.yaml
  server:
    listen_uri: 127.0.0.1:$LAPI_PORT
    profiles_path: $C/profiles.yaml
prometheus:
  enabled: $2
  level: full
  listen_addr: 127.0.0.1
  listen_port: ${3:-0}
EOF
}
write_config "$C/config.yaml" false
"$CSCLI" -c "$C/config.yaml" machines add bench --auto --force -f "$C/local_api_credentials.yaml" >"$C/log/cscli.log" 2>&1 \
  || die "cscli machines add failed: $(tail -n3 "$C/log/cscli.log")"

# The local API, for the agent to log in to (no online API: there is no online_client).
"$CS" -c "$C/config.yaml" -no-cs -no-capi >"$C/log/lapi.out" 2>&1 &
LAPI_PID=$!
for _ in $(seq 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$LAPI_PORT/health', timeout=1)" 2>/dev/null && break
  kill -0 "$LAPI_PID" 2>/dev/null || die "the CrowdSec local API did not start: $(tail -n3 "$C/log/"*api*.log "$C/log/lapi.out" 2>/dev/null)"
  sleep 0.2
done
kill -0 "$LAPI_PID" 2>/dev/null || die "the CrowdSec local API died"

# cs_agent LOG INPUT: the forensic run; every message to LOG (single-file
# mode logs to stdout whatever the config says).
cs_agent() { "$CS" -c "$C/config.yaml" -dsn "file://$2" -type syslog -no-api >"$1" 2>&1; }
overflows() { grep -c "performed 'crowdsecurity/$2'" "$1" || true; }  # overflows LOG SCENARIO

# ---------------------------------------------------------------- 3a. canary: ssh-bf fires, in the lines' time
python3 - >"$T/canary.jsonl" <<'PY'
import json
from datetime import datetime, timedelta, timezone
t0 = datetime(2020, 1, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=9)))
def ev(i, ip, dt):
    ts = (t0 + dt).isoformat(timespec="milliseconds")
    return {"event_id": f"canary-{i}", "ts": ts, "step": "login", "result": "failure",
            "customer_id": "c-canary", "ip": ip}
evs = [ev(i, "198.51.100.7", timedelta(seconds=i)) for i in range(10)]          # 10 in 10 s: overflows
evs += [ev(10 + i, "198.51.100.8", timedelta(minutes=i)) for i in range(10)]    # 1 a minute: must not
for e in sorted(evs, key=lambda e: e["ts"]):
    print(json.dumps(e))
PY
python3 "$CONVERT" "$T/canary.jsonl" >"$T/canary.log" 2>/dev/null
cs_agent "$C/log/canary.log" "$T/canary.log" || die "crowdsec failed on the canary: $(tail -n5 "$C/log/canary.log")"
grep -q "performed 'crowdsecurity/ssh-bf' .* at 2020-01-01" "$C/log/canary.log" \
  && [[ $(overflows "$C/log/canary.log" ssh-bf) == 1 ]] \
  && ! grep -q "198.51.100.8 performed" "$C/log/canary.log" \
  || die "canary: expected exactly one ssh-bf overflow, for 198.51.100.7, dated 2020-01-01 (the lines' time, not today); got:
$(grep performed "$C/log/canary.log" || echo '  none')"

# ---------------------------------------------------------------- 3b. verification pass (untimed)
# Prometheus on; the FIFO is held open (fd 9, read-write so opening never blocks)
# until the counters show every line through the parsers, then closed: EOF, exit.
echo "verifying that CrowdSec parses the stream (untimed pass) ..." >&2
PROM_PORT=$(free_port)
write_config "$C/config-verify.yaml" true "$PROM_PORT"
PROM_URL=http://127.0.0.1:$PROM_PORT/metrics
mkfifo "$T/auth.fifo"
exec 9<>"$T/auth.fifo"
"$CS" -c "$C/config-verify.yaml" -dsn "file://$T/auth.fifo" -type syslog -no-api >"$C/log/verify.log" 2>&1 9>&- &
VERIFY_PID=$!   # crowdsec itself (not a subshell), so that cleanup can stop it
cat "$T/auth.log" >&9 9>&- &   # 9>&-: only fd 9 itself may keep the FIFO open
FEED_PID=$!
seen=0 still=0
while :; do
  sleep 0.5
  kill -0 "$VERIFY_PID" 2>/dev/null || die "crowdsec died during the verification pass: $(tail -n5 "$C/log/verify.log")"
  now=$(prom "$PROM_URL" cs_parser_hits_total)
  (( now >= LINES )) && break
  # Give up if nothing moves for 30 s (the last few lines may sit in a channel).
  if (( now == seen )); then (( ++still > 60 )) && break; else still=0; seen=$now; fi
done
sleep 1   # let the bucket and output routines catch up with the last lines
P_TOTAL=$(prom "$PROM_URL" cs_parser_hits_total)
P_OK=$(prom "$PROM_URL" cs_parser_hits_ok_total)
P_KO=$(prom "$PROM_URL" cs_parser_hits_ko_total)
SSHD_OK=$(prom "$PROM_URL" cs_node_hits_ok_total 'name="crowdsecurity/sshd-logs"')
SSHD_KO=$(prom "$PROM_URL" cs_node_hits_ko_total 'name="crowdsecurity/sshd-logs"')
POURED=$(prom "$PROM_URL" cs_bucket_poured_total 'name="crowdsecurity/ssh-bf"')
exec 9>&-
wait "$FEED_PID" 2>/dev/null || true; FEED_PID=
for _ in $(seq 120); do kill -0 "$VERIFY_PID" 2>/dev/null || break; sleep 0.5; done
kill -0 "$VERIFY_PID" 2>/dev/null && die "crowdsec did not exit after the end of its input (verification pass)"
wait "$VERIFY_PID" || die "crowdsec failed in the verification pass: $(tail -n5 "$C/log/verify.log")"
VERIFY_PID=
V_BF=$(overflows "$C/log/verify.log" ssh-bf)
V_ENUM=$(overflows "$C/log/verify.log" ssh-bf_user-enum)
(( SSHD_OK * 100 >= LINES * MIN_PARSED_PCT )) \
  || die "CrowdSec's sshd parser took only $SSHD_OK of $LINES lines (read $P_TOTAL, parsed $P_OK, unparsed $P_KO); see the verification log"

# ---------------------------------------------------------------- 4. timed rounds, alternating
printf 'stream: %s events (random world %s, %s days, %s customers, %s failures); sshd lines: %s\n' \
  "$(commas "$EVENTS")" "$WORLD_SEED" "$DAYS" "$(commas "$CUSTOMERS")" "$(commas "$FAILURES")" "$(commas "$LINES")"
printf 'haechi: %s; crowdsec: %s (%s), forensic agent only, prometheus off, parser_routines 1; %s cores\n' \
  "$HAECHI" "${CS_VERSION:-?}" "$(basename "$DEB")" "$(nproc)"
HDR='%-5s  %11s  %10s  %13s  %15s   %13s  %12s  %13s  %18s   %7s\n'
printf "$HDR" round "haechi wall" "haechi cpu" "haechi ev/s" "haechi ev/cpu-s" "crowdsec wall" "crowdsec cpu" "crowdsec l/s" "crowdsec l/cpu-s" ratio
: >"$T/rates"
for ((r = 1; r <= ROUNDS; r++)); do
  # The binaries themselves under `timed` (GNU time cannot run a shell function).
  timed "$T/h$r.time" "$HAECHI" replay "$T/events.jsonl" >/dev/null 2>"$T/haechi-$r.log" \
    || die "haechi replay failed (round $r): $(tail -n5 "$T/haechi-$r.log")"
  timed "$T/c$r.time" "$CS" -c "$C/config.yaml" -dsn "file://$T/auth.log" -type syslog -no-api >"$C/log/round-$r.log" 2>&1 \
    || die "crowdsec failed (round $r): $(tail -n5 "$C/log/round-$r.log")"
  grep -q 'Acquisition is finished' "$C/log/round-$r.log" || die "crowdsec round $r did not read the file to its end"
  ovf=$(overflows "$C/log/round-$r.log" ssh-bf)
  [[ $ovf == "$V_BF" ]] || echo "note: round $r gave $ovf ssh-bf overflows, the verification pass $V_BF" >&2
  # One line per round: r, haechi wall, cpu, ev/s, ev/cpu-s, crowdsec wall, cpu, l/s, l/cpu-s, ratio (cpu).
  # GNU time counts in 10 ms steps, so a zero is read as 10 ms.
  read -r hw hu hs <"$T/h$r.time"
  read -r cw cu cy <"$T/c$r.time"
  awk -v r="$r" -v n="$EVENTS" -v l="$LINES" -v hw="$hw" -v hc="$(awk "BEGIN { print $hu + $hs }")" \
      -v cw="$cw" -v cc="$(awk "BEGIN { print $cu + $cy }")" 'function nz(x) { return x > 0 ? x : 0.01 }
    BEGIN { printf "%d %.2f %.2f %.0f %.0f %.2f %.2f %.0f %.0f %.2f\n", r, hw, hc, n / nz(hw), n / nz(hc),
              cw, cc, l / nz(cw), l / nz(cc), (n / nz(hc)) / (l / nz(cc)) }' >>"$T/rates"
  read -r _ hw hc hws hcs cw cc cws ccs ratio <<<"$(tail -n1 "$T/rates")"
  printf "$HDR" "$r" "${hw}s" "${hc}s" "$(commas "$hws")" "$(commas "$hcs")" \
    "${cw}s" "${cc}s" "$(commas "$cws")" "$(commas "$ccs")" "$(printf '%.1fx' "$ratio")"
done

H_WALL=$(awk '{ print $4 }' "$T/rates" | median)
H_CPU=$(awk '{ print $5 }' "$T/rates" | median)
C_WALL=$(awk '{ print $8 }' "$T/rates" | median)
C_CPU=$(awk '{ print $9 }' "$T/rates" | median)
printf 'median: haechi %s events/CPU-s, crowdsec %s lines/CPU-s: ratio %.1fx  (wall: %s vs %s per s: %.1fx)\n' \
  "$(commas "$H_CPU")" "$(commas "$C_CPU")" "$(awk "BEGIN { print $H_CPU / $C_CPU }")" \
  "$(commas "$H_WALL")" "$(commas "$C_WALL")" "$(awk "BEGIN { print $H_WALL / $C_WALL }")"
printf 'crowdsec: parsed %s of %s lines (sshd-logs %s ok, %s not; unparsed %s); ssh-bf poured %s failures, overflows: %s (ssh-bf_user-enum: %s)\n' \
  "$(commas "$P_OK")" "$(commas "$LINES")" "$(commas "$SSHD_OK")" "$(commas "$SSHD_KO")" "$(commas "$P_KO")" \
  "$(commas "$POURED")" "$V_BF" "$V_ENUM"
printf '         (ssh-bf needs 6 failures from one address within ~50 s; the stream'"'"'s most in 60 s: %s, from %s)\n' "$BURST" "$BURST_IP"
printf 'haechi: %s\n' "$(grep -E '^(alerts|decisions):' "$T/haechi-1.log" | tr -s ' ' | paste -sd';' - | sed 's/;/; /g')"
