#!/bin/bash
# usage: cpuc.sh strake|etcd CLIENTBIN LABEL [WORKLOAD]: 1 member, 64 clients, 10k keys, 10 s; server + client CPU per op
d=/tmp/ab/data-cpu; rm -rf $d
if [ $1 = strake ]; then
/tmp/ab/strake-gm etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/cpu.log 2>&1 &
else
$HOME/.cache/strake/etcd-venv/bin/etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 > /tmp/ab/cpu.log 2>&1 &
fi
pid=$!; sleep 2
s0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o /tmp/ab/ctime.txt $2 bench run ${4:-put} --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration ${DUR:-10s} --key-space 10000 --quiet --json /tmp/ab/cpu.json > /dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 - $s0 $s1 $3 <<'PY'
import json,sys
s=(int(sys.argv[2])-int(sys.argv[1]))/100
u,k=map(float,open('/tmp/ab/ctime.txt').read().split()[:2])
j=json.load(open('/tmp/ab/cpu.json')); j=j[0] if isinstance(j,list) else j
ops=j['ops']
print(f"{sys.argv[3]:10s} ops/s {j['ops_per_sec']:6.0f} p50 {j['p50_ms']:.2f} p99 {j['p99_ms']:.2f} err {len(j['errors'])} | server {s/ops*1e6:3.0f} us/op  client {(u+k)/ops*1e6:3.0f} us/op")
PY
