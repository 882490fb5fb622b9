#!/bin/bash
# usage: abort.sh VER N -- load 1M keys, kill, restart, kill after 6 s; count aborts at shutdown
S=/tmp/ab/strake-$1
A="--listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800"
for i in $(seq 1 $2); do
  rm -rf /tmp/rsa; $S etcd --data-dir /tmp/rsa $A > /tmp/rsa1.log 2>&1 & PID=$!; sleep 2
  $S bench run range-serial --endpoints 127.0.0.1:23790 --key-space 1000000 --total 1 --quiet >/dev/null 2>&1
  kill $PID; wait $PID; r1=$?
  $S etcd --data-dir /tmp/rsa $A > /tmp/rsa2.log 2>&1 & PID=$!; sleep 6; kill $PID; wait $PID; r2=$?
  echo "$1 $i rc=$r1/$r2 aborts=$(cat /tmp/rsa1.log /tmp/rsa2.log | grep -c pthread)"
  grep -l pthread /tmp/rsa1.log /tmp/rsa2.log | while read f; do cp $f /tmp/ab/abort-$1-$i-$(basename $f); done
done
