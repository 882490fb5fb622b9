#!/bin/bash
# usage: S=BIN met.sh WORKLOAD: 1-member run, prints the server's pipeline metrics (sum/count) after the run
d=/tmp/ab/data-met; rm -rf $d
$S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/met.log 2>&1 &
pid=$!; sleep 1.5
/tmp/ab/strake-base bench run ${1:-put} --endpoints 127.0.0.1:23790 --clients ${CL:-64} --conns ${CONNS:-8} ${RATE:+--rate $RATE} --duration ${DUR:-8s} --quiet --json /tmp/ab/met.json > /dev/null 2>&1
curl -s http://127.0.0.1:23790/metrics > /tmp/ab/met.txt
kill $pid; wait $pid 2>/dev/null
grep -E "_(sum|count) " /tmp/ab/met.txt | grep -v -E "^grpc|^process|go_" 
python3 -c "import json; j=json.load(open('/tmp/ab/met.json')); j=j[0] if isinstance(j,list) else j; print('ops/s', round(j['ops_per_sec']), 'p50', j['p50_ms'])"
