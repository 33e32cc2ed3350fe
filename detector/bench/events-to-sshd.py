#!/usr/bin/env python3
"""Turn a Haechi NDJSON event stream into sshd syslog lines, one per event.

Used by bench-crowdsec.sh so that CrowdSec reads the same stream Haechi
replays. Every line must be accepted by CrowdSec's stock parsers
(crowdsecurity/syslog-logs -> crowdsecurity/sshd-logs -> dateparse-enrich):

  failure -> "Failed password for USER from IP port PORT ssh2"
             (sshd-logs node SSHD_FAIL, log_type ssh_failed-auth: what
             ssh-bf and ssh-bf_user-enum count)
  success -> "Disconnected from IP port PORT"
             sshd-logs (hub version shipped with 1.4.6) has no node for
             "Accepted password ..." lines: they would be dropped as unparsed
             and CrowdSec would do less work than Haechi. This is the line
             sshd logs when a session ends; sshd-logs parses it (node
             SSHD_DISC_PREAUTH) and does not count it as a failure.

The syslog timestamp is the event's own `ts` in RFC 3339 form (rsyslog's
high-precision format, e.g. 2026-11-02T00:00:47.661+09:00): syslog-logs
captures it as timestamp8601 and dateparse-enrich parses it with Go's
time.RFC3339, keeping year, zone and milliseconds, so CrowdSec's leaky
buckets run in the stream's time (forensic mode). The classic
"Nov  2 00:00:47" form would lose the year and the zone.

Usage: events-to-sshd.py EVENTS.jsonl > auth.log   (or - for stdin)
Prints "lines N failures F burst60 B IP" to stderr: B is the most failures
one address has within any 60 s of the stream. ssh-bf (capacity 5, leaking
one per 10 s) needs six within about 50 s, so a B below 6 explains a run
with no ssh-bf overflow.
"""
import json
import sys
import zlib
from collections import defaultdict, deque
from datetime import datetime

HOST = "bank"
NO_IP = "192.0.2.1"  # RFC 5737 documentation address, for events without ip


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src = sys.stdin if sys.argv[1] == "-" else open(sys.argv[1], encoding="utf-8")
    out = sys.stdout
    write = out.write
    crc = zlib.crc32
    lines = failures = 0
    recent = defaultdict(deque)  # ip -> times (s) of its failures in the last 60 s
    burst, burst_ip = 0, "-"
    for raw in src:
        if not raw.strip():
            continue
        e = json.loads(raw)
        ip = e.get("ip") or NO_IP
        # Staff events carry the customer whose record was viewed; the actor
        # logging in is the staff member.
        user = e.get("staff_id") or e.get("customer_id") or e.get("session_id") or "unknown"
        # Stable, plausible pid (per session) and source port (per event), so
        # the file is the same on every run.
        sess = e.get("session_id") or user
        pid = 1000 + crc(sess.encode()) % 60000
        port = 1024 + crc(e["event_id"].encode()) % 64000
        prefix = f"{e['ts']} {HOST} sshd[{pid}]: "
        if e.get("result") == "failure":
            failures += 1
            t = datetime.fromisoformat(e["ts"]).timestamp()
            q = recent[ip]
            q.append(t)
            while t - q[0] >= 60:
                q.popleft()
            if len(q) > burst:
                burst, burst_ip = len(q), ip
            write(f"{prefix}Failed password for {user} from {ip} port {port} ssh2\n")
        else:
            write(f"{prefix}Disconnected from {ip} port {port}\n")
        lines += 1
    out.flush()
    print(f"lines {lines} failures {failures} burst60 {burst} {burst_ip}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
