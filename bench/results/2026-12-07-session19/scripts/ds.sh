#!/bin/bash
# usage: ds.sh LABEL BINARY: 2M-key × 2 KiB load-only dataset run against a fresh 1-member strake
/tmp/ab/strake-base bench dataset --server strake --binary $2 --keys 2000000 --stop-after load --quiet --json /tmp/ab/s19/ds-$1.json > /tmp/ab/s19/ds-$1.log 2>&1
python3 - <<PY
import json
j=json.load(open('/tmp/ab/s19/ds-$1.json'))
ph=j['phases'][0]
print('$1', 'load s', round(ph['ops']['seconds'],1), 'stalls', ph['stalls'], 'probe p99 r/w', ph['probe_read']['p99_ms'], ph['probe_write']['p99_ms'], 'max r/w', ph['probe_read']['max_ms'], ph['probe_write']['max_ms'], 'rss MiB', j['peak_rss_kib']//1024)
PY
