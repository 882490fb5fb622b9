#!/bin/bash
# summ.sh LABEL...: load seconds, stalls, probe maxima, held writes per run
cd /tmp/ab/s15
for l in "$@"; do
  python3 - "$l" <<'PY'
import json, sys, re
l = sys.argv[1]
d = json.load(open(f'ds10-{l}.json'))
p = d['phases'][0]
held = []
try:
    for line in open(f'srv-{l}.log', errors='replace'):
        if 'held for' in line:
            m = re.search(r'held_ms\S*?=\S*?(\d+)', re.sub(r'\x1b\[[0-9;]*m', '', line))
            if m: held.append(int(m.group(1)))
except FileNotFoundError:
    pass
st = [e for e in d['stall_events'] if e['phase'] == 'load']
print(f"{l:8} load {p['ops']['seconds']:6.1f} s {p['ops']['ops_per_sec']:5.0f} txn/s stalls {p['stalls']:3d} "
      f"(>200ms {sum(1 for e in st if e['ms'] > 200)}) probe max r/w {p['probe_read']['max_ms']:.0f}/{p['probe_write']['max_ms']:.0f} ms "
      f"p99 r/w {p['probe_read']['p99_ms']:.0f}/{p['probe_write']['p99_ms']:.0f}; held {len(held)} writes, {sum(held)/1000:.0f} s, "
      f"capped {sum(1 for h in held if h >= 1990)}")
PY
done
