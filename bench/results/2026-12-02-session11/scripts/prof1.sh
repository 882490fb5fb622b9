#!/bin/bash
# usage: prof1.sh WORKLOAD [secs]  -- 1-member profile of strake-new under bench run
S=${S:-/tmp/ab/strake-lim}; WL=$1
rm -rf /tmp/p; $S etcd --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!
sleep 2; $S bench run $WL --endpoints 127.0.0.1:23790 --duration 14s --key-space 10000 --quiet --json /tmp/ab/prof.json >/dev/null 2>&1 & 
sleep 4; perf record -F 499 -g -p $PID -o /tmp/ab/perf.data -- sleep 8 2>&1 | tail -1; wait %2; python3 /tmp/ab/summ.py /tmp/ab/prof.json $WL; kill $PID
perf report -i /tmp/ab/perf.data --no-children --sort symbol -g none 2>/dev/null | grep -v "^#" | grep "%" | head -${2:-40} | cut -c1-150
