#!/bin/bash
# usage: kw.sh VER LABEL -- 1 member: k8s-mix 13 s, then watch-latency 3 s warm-up + 10 s on the same server (suite order)
S=/tmp/ab/strake-$1
rm -rf /tmp/p; $S etcd --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!; sleep 2
$S bench run k8s-mix --endpoints 127.0.0.1:23790 --clients 64 --duration 13s --key-space 10000 --quiet >/dev/null 2>&1
$S bench run watch-latency --endpoints 127.0.0.1:23790 --clients 100 --duration 3s --quiet >/dev/null 2>&1
$S bench run watch-latency --endpoints 127.0.0.1:23790 --clients 100 --duration 10s --quiet --json /tmp/ab/kw.json >/dev/null 2>&1
python3 /tmp/ab/summ.py /tmp/ab/kw.json "$2"; kill $PID; wait $PID 2>/dev/null
