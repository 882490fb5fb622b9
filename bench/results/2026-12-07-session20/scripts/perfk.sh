#!/bin/bash
# usage: perfk.sh LABEL WORKLOAD: perf record of a 1-member strake server during a 64-client run
d=/tmp/ab/data-pp; rm -rf $d
C=/tmp/ab/strake-base
${S:-/tmp/ab/strake-base} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/pp.log 2>&1 &
pid=$!; sleep 1.5
$C bench run ${2:-put} --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration 10s --quiet --json /tmp/ab/pp.json >/dev/null 2>&1 &
cpid=$!
sleep 4
perf record -F 499 --call-graph dwarf,16384 -p $pid -o /tmp/ab/s20/$1.perf -- sleep 4 >/dev/null 2>&1
wait $cpid
kill $pid; wait $pid 2>/dev/null
python3 -c "import json; j=json.load(open('/tmp/ab/pp.json')); j=j[0] if isinstance(j,list) else j; print('ops/s', round(j['ops_per_sec']))"
