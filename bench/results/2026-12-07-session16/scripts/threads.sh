#!/bin/bash
# usage: S=BIN threads.sh WORKLOAD [DUR]: per-thread CPU seconds of the server during a 64-client run
d=/tmp/ab/data-thr; rm -rf $d
$S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/thr.log 2>&1 &
pid=$!; sleep 1.5
snap() { for t in /proc/$pid/task/*; do echo "$(basename $t) $(cat $t/comm | tr ' ' _) $(awk '{print $14+$15}' $t/stat)"; done; }
snap > /tmp/ab/thr0
/tmp/ab/strake-client bench run $1 --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --duration ${2:-8s} --quiet --json /tmp/ab/thr.json > /dev/null 2>&1
snap > /tmp/ab/thr1
kill $pid; wait $pid 2>/dev/null
python3 - <<'PY'
import json,collections
a={l.split()[0]:(l.split()[1],int(l.split()[2])) for l in open('/tmp/ab/thr0')}
agg=collections.Counter()
for l in open('/tmp/ab/thr1'):
    tid,n,v=l.split(); agg[n]+=int(v)-a.get(tid,(n,0))[1]
j=json.load(open('/tmp/ab/thr.json')); j=j[0] if isinstance(j,list) else j
print(f"ops/s {j['ops_per_sec']:.0f}", ' '.join(f"{n}={v/100:.2f}s" for n,v in agg.most_common(8)))
PY
