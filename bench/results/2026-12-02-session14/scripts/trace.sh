#!/bin/bash
# usage: trace.sh sched|record LABEL [watchers]: perf sched record / perf record (call graphs)
# of a 1-member strake server (S=binary) during watch-latency at 500 puts/s, 2 s into the run
d=/tmp/ab/data-wl; rm -rf $d
C=$HOME/.cache/strake/target/release/strake
${S:-/tmp/ab/strake-s13} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
pid=$!; sleep 1.5
$C bench run watch-latency --endpoints 127.0.0.1:23790 --clients ${3:-1} --rate 500 --duration 8s --key-space 10000 --quiet --json /tmp/ab/wl.json >/dev/null 2>&1 &
cpid=$!
sleep 2
if [ "$1" = sched ]; then
  perf sched record -o /tmp/ab/s14/$2.sched -- sleep 2 >/dev/null 2>&1
else
  perf record -F 999 -g -p $pid -o /tmp/ab/s14/$2.perf -- sleep 5 >/dev/null 2>&1
fi
wait $cpid
kill $pid; wait $pid 2>/dev/null
