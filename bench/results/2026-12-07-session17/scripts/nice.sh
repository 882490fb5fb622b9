#!/bin/bash
# usage: S=BIN nice.sh LABEL WORKLOAD NICE THREADS-REGEX: like cpu.sh, renicing the matching server threads after start
d=/tmp/ab/data-nice; rm -rf $d
$S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/nice.log 2>&1 &
pid=$!; sleep 1.5
for t in /proc/$pid/task/*; do if grep -qE "$4" $t/comm; then renice -n $3 -p $(basename $t) >/dev/null; fi; done
s0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o /tmp/ab/ctime.txt /tmp/ab/strake-base bench run $2 --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration 8s --quiet --json /tmp/ab/nice.json > /dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 - $s0 $s1 $1 $2 <<'PY'
import json,sys
s=(int(sys.argv[2])-int(sys.argv[1]))/100
u,k=map(float,open('/tmp/ab/ctime.txt').read().split()[:2])
j=json.load(open('/tmp/ab/nice.json')); j=j[0] if isinstance(j,list) else j
ops=j['ops']
print(f"{sys.argv[3]:8s} {sys.argv[4]:8s} ops/s {j['ops_per_sec']:7.0f} p50 {j['p50_ms']:.3f} p99 {j['p99_ms']:.3f} server {s/ops*1e6:5.1f} us/op client {(u+k)/ops*1e6:5.1f} us/op")
PY
