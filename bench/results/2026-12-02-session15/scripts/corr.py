#!/usr/bin/env python3
"""corr.py REPORT.json ROCKSDB_LOG: each load-phase stall with RocksDB write-throttling events near it."""
import json, sys, re, datetime, collections
rep = json.load(open(sys.argv[1]))
t0 = rep['began_unix_s']
events = []
for line in open(sys.argv[2], errors='replace'):
    m = re.match(r'(\d{4}/\d\d/\d\d-\d\d:\d\d:\d\d\.\d+) \S+ (.*)', line)
    if not m: continue
    ts = datetime.datetime.strptime(m.group(1), '%Y/%m/%d-%H:%M:%S.%f').replace(tzinfo=datetime.timezone.utc).timestamp() - t0
    msg = m.group(2)
    if 'Stalling writes' in msg or 'Stopping writes' in msg:
        k = re.sub(r'\d+', 'N', msg.split('] ',1)[-1])[:90]
        events.append((ts, k))
kinds = collections.Counter(k for _, k in events)
print('rocksdb throttling events:'); [print(' ', n, k) for k, n in kinds.most_common()]
stalls = [e for e in rep['stall_events'] if e['phase'] == 'load']
near = 0
for s in stalls:
    t = s['at_s'] - s['ms'] / 1000.0  # the probe was sent here
    hits = [k for ts, k in events if t - 0.5 <= ts <= s['at_s'] + 0.05]
    near += bool(hits)
print(f'load stalls: {len(stalls)}, with a throttling event from 0.5 s before the probe to its end: {near}')
by = collections.Counter(int(s['at_s'] // 30) * 30 for s in stalls)
print('load stalls per 30 s:', dict(sorted(by.items())))
