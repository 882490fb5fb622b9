#!/bin/bash
# usage: perfw.sh LABEL [watchers]: perf record of a strake server during watch-latency
d=/tmp/ab/data-wl; rm -rf $d
C=$HOME/.cache/strake/target/release/strake
${S:-/tmp/ab/strake-s13} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
pid=$!; sleep 1.5
$C bench run watch-latency --endpoints 127.0.0.1:23790 --clients ${2:-100} --rate 500 --duration 8s --key-space 10000 --quiet --json /tmp/ab/wl.json >/dev/null 2>&1 &
cpid=$!
sleep 2
perf record -F 999 -g -p $pid -o /tmp/ab/s14/$1.perf -- sleep 5 >/dev/null 2>&1
wait $cpid
kill $pid; wait $pid 2>/dev/null
