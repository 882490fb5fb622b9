#!/bin/bash
# usage: cas.sh VER LABEL -- 1 member, txn-cas over 200k keys of 2 KiB (more than the 32 MiB cache of newest versions),
# 3 s warm-up then 10 s. VER=etcd runs etcd 3.5.1 (the client is then strake-dp3), else /tmp/ab/strake-VER.
if [ "$1" = etcd ]; then
  S=/tmp/ab/strake-dp3
  SERVER="$HOME/.cache/strake/etcd-venv/bin/etcd --quota-backend-bytes=8589934592 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800"
else
  S=/tmp/ab/strake-$1; SERVER="$S etcd"
fi
rm -rf /tmp/p; $SERVER --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!; sleep 2
$S bench run txn-cas --endpoints 127.0.0.1:23790 --clients 64 --duration 3s --key-space ${KS:-200000} --val-size 2048 --quiet >/dev/null 2>&1
s0=$(awk '{print $14+$15}' /proc/$PID/stat)
$S bench run txn-cas --endpoints 127.0.0.1:23790 --clients 64 --duration 10s --key-space ${KS:-200000} --val-size 2048 --quiet --json /tmp/ab/cas-$2.json >/dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$PID/stat)
python3 /tmp/ab/summ.py /tmp/ab/cas-$2.json "$2 cpu=$(( s1-s0 ))cs"; kill $PID; wait $PID 2>/dev/null
