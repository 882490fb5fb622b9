#!/usr/bin/env python3
# usage: perf report --no-children --sort comm,dso,sym -i F --stdio | crates.py : self time grouped by crate
import sys, re, collections
agg = collections.Counter(); total = 0.0
for line in sys.stdin:
    m = re.match(r'\s+([\d.]+)%\s+(\S+)\s+(\S+)\s+\[(.)\]\s+(.*)', line)
    if not m: continue
    pct, comm, dso, kind, sym = float(m[1]), m[2], m[3], m[4], m[5].strip()
    total += pct
    if kind == 'k': key = 'kernel'
    else:
        s = re.sub(r'^<', '', sym)
        mm = re.match(r'([a-zA-Z_][a-zA-Z0-9_]*)::', s)
        key = mm[1] if mm else ('libc' if 'libc' in dso else ('rocksdb' if 'rocksdb' in sym.lower() or sym.startswith('_ZN7rocksdb') else sym[:40]))
    agg[(comm, key)] += pct
for (c, k), v in sorted(agg.items(), key=lambda x: -x[1])[:60]:
    print(f"{v:6.2f}%  {c:18s} {k}")
print('total', round(total, 1))
