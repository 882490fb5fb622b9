#!/bin/bash
# usage: cpu.sh strake|etcd WORKLOAD: 64-client run, prints ops/s and CPU seconds of server and client
d=/tmp/ab/data-cpu; rm -rf $d
if [ $1 = strake ]; then
${S:-/tmp/ab/strake-new} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/cpu.log 2>&1 &
else
E=${ETCD_BIN:-$HOME/.cache/strake/etcd-venv/bin/etcd}
$E --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 > /tmp/ab/cpu.log 2>&1 &
fi
pid=$!; sleep 1.5
s0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o /tmp/ab/ctime.txt $HOME/.cache/strake/target/release/strake bench run $2 --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration 5s --quiet --json /tmp/ab/cpu.json > /dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 - $s0 $s1 <<'PY'
import json,sys
hz=100
s=(int(sys.argv[2])-int(sys.argv[1]))/hz
u,k=map(float,open('/tmp/ab/ctime.txt').read().split()[:2])
j=json.load(open('/tmp/ab/cpu.json')); j=j[0] if isinstance(j,list) else j
ops=j['ops']
print(f"ops/s {j['ops_per_sec']:.0f}  server CPU {s:.2f}s = {s/ops*1e6:.0f} us/op   client CPU {u+k:.2f}s = {(u+k)/ops*1e6:.0f} us/op")
PY
