#!/bin/bash
# usage: k8sv.sh VER LABEL -- 1 member k8s-mix with VAL-byte values (default 2048), 3 s warm-up then 10 s; VER=etcd for etcd 3.5.1 (client strake-dp4)
if [ "$1" = etcd ]; then
  S=/tmp/ab/strake-dp4
  SERVER="$HOME/.cache/strake/etcd-venv/bin/etcd --quota-backend-bytes=8589934592 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800"
else
  S=/tmp/ab/strake-$1; SERVER="$S etcd"
fi
rm -rf /tmp/p; $SERVER --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!; sleep 2
$S bench run k8s-mix --endpoints 127.0.0.1:23790 --clients 64 --duration 3s --key-space ${KS:-10000} --val-size ${VAL:-2048} --quiet >/dev/null 2>&1
$S bench run k8s-mix --endpoints 127.0.0.1:23790 --clients 64 --duration 10s --key-space ${KS:-10000} --val-size ${VAL:-2048} --quiet --json /tmp/ab/k8sv-$2.json >/dev/null 2>&1
python3 /tmp/ab/summ.py /tmp/ab/k8sv-$2.json "$2"; kill $PID; wait $PID 2>/dev/null
