#!/bin/bash
# usage: wl.sh strake|etcd LABEL [watchers]: 1 member watch-latency, S=server binary, prints p50/p90/p99 and server CPU
d=/tmp/ab/data-wl; rm -rf $d
C=$HOME/.cache/strake/target/release/strake
if [ $1 = strake ]; then
${S:-/tmp/ab/strake-s13} etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
else
$HOME/.cache/strake/etcd-venv/bin/etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
fi
pid=$!; sleep 1.5
if [ -n "$WARM" ]; then $C bench run put --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration $WARM --quiet >/dev/null 2>&1; fi
s0=$(awk '{print $14+$15}' /proc/$pid/stat)
/usr/bin/time -f "%U %S" -o /tmp/ab/wtime.txt $C bench run watch-latency --endpoints 127.0.0.1:23790 --clients ${3:-100} --rate 500 --duration ${DUR:-10s} --key-space 10000 --quiet --json /tmp/ab/wl.json >/dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 - $s0 $s1 $2 <<'PY'
import json,sys
s=(int(sys.argv[2])-int(sys.argv[1]))/100
u,k=map(float,open('/tmp/ab/wtime.txt').read().split()[:2])
j=json.load(open('/tmp/ab/wl.json')); j=j[0] if isinstance(j,list) else j
print(f"{sys.argv[3]:10s} events/s {j['ops_per_sec']:6.0f} p50 {j['p50_ms']:.3f} p90 {j['p90_ms']:.3f} p99 {j['p99_ms']:.3f} p999 {j['p999_ms']:.2f} server cpu {s:.2f}s client cpu {u+k:.2f}s")
PY
