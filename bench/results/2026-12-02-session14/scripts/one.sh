#!/bin/bash
# usage: one.sh LABEL [pin]: single-client put 5 s on strake (S), optional: pin raft-core and raft-log threads to CPU $PINCPU
d=/tmp/ab/data-one; rm -rf $d
C=$HOME/.cache/strake/target/release/strake
${S:-/tmp/ab/strake-s13} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/one.log 2>&1 &
pid=$!; sleep 1.5
if [ -n "$2" ]; then
  for t in /proc/$pid/task/*; do n=$(cat $t/comm); case "$n" in $2) taskset -p -c ${PINCPU:-1} $(basename $t) >/dev/null;; esac; done
fi
$C bench run put --endpoints 127.0.0.1:23790 --clients ${CL:-1} --conns 1 --duration 5s --quiet --json /tmp/ab/one.json >/dev/null 2>&1
kill $pid; wait $pid 2>/dev/null
python3 - $1 <<'PY'
import json,sys
j=json.load(open('/tmp/ab/one.json')); j=j[0] if isinstance(j,list) else j
print(f"{sys.argv[1]:10s} ops/s {j['ops_per_sec']:6.0f} p50 {j['p50_ms']:.3f} p90 {j['p90_ms']:.3f} p99 {j['p99_ms']:.3f}")
PY
