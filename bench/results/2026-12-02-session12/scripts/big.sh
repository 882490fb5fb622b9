#!/bin/bash
# usage: KS=KEYS big.sh WORKLOAD VER LABEL -- 1 member, WORKLOAD with 2 KiB values over KS keys, 3 s warm-up then 10 s.
# VER=etcd runs etcd 3.5.1 (the client is then strake-dp4), else /tmp/ab/strake-VER.
# Session 12 ran txn-cas with KS=200000 (more than the 32 MiB cache of newest versions) and k8s-mix with KS=10000.
if [ "$2" = etcd ]; then
  S=/tmp/ab/strake-dp4
  SERVER="$HOME/.cache/strake/etcd-venv/bin/etcd --quota-backend-bytes=8589934592 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800"
else
  S=/tmp/ab/strake-$2; SERVER="$S etcd"
fi
rm -rf /tmp/p; $SERVER --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!; sleep 2
run() { $S bench run $1 --endpoints 127.0.0.1:23790 --clients 64 --duration $2 --key-space ${KS:?} --val-size 2048 --quiet "${@:3}" >/dev/null 2>&1; }
run $1 3s
run $1 10s --json /tmp/ab/$1-$3.json
python3 /tmp/ab/summ.py /tmp/ab/$1-$3.json "$3"; kill $PID; wait $PID 2>/dev/null
