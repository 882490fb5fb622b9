#!/bin/bash
# usage: kab.sh LABEL [env...]: 1-member strake, 64-client k8s-mix for 10 s; prints ops/s and server CPU per op
label=$1; shift
d=/tmp/ab/data-k; rm -rf $d
env "$@" ${S:-/tmp/ab/strake-base} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/k.log 2>&1 &
pid=$!; sleep 1.5
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/ab/strake-base bench run ${W:-k8s-mix} --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration 10s --quiet --json /tmp/ab/k.json >/dev/null 2>&1
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 -c "import json; j=json.load(open('/tmp/ab/k.json')); j=j[0] if isinstance(j,list) else j; ops=j['ops_per_sec']; print('$label', round(ops), 'ops/s', 'cpu/op(us, incl preload)', round(($t1-$t0)*1e4/(ops*10),1), 'p99', j.get('latency_ms',{}).get('p99', j.get('p99_ms')))"
