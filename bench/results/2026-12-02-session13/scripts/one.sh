#!/bin/bash
# usage: one.sh VER -- 1 member, single-client put 5 s, p50/p99
S=/tmp/ab/strake-$1; d=/tmp/ab/data-one; rm -rf $d
$S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/one.log 2>&1 &
pid=$!; sleep 1.5
$S bench run put --endpoints 127.0.0.1:23790 --clients 1 --conns 1 --duration 5s --quiet --json /tmp/ab/one-$1.json >/dev/null 2>&1
curl -s 127.0.0.1:23790/metrics | grep -E 'wal_fsync_duration_seconds_(sum|count)' | tr '\n' ' '; echo
kill $pid; wait $pid 2>/dev/null
python3 /tmp/ab/summ.py /tmp/ab/one-$1.json $1
