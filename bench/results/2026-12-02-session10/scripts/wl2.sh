# usage: wl2.sh strake|etcd LABEL [clients]: 1 member watch-latency 10 s, lean client
d=/tmp/ab/data-wl; rm -rf $d
if [ $1 = strake ]; then
/tmp/ab/strake-lc etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
else
$HOME/.cache/strake/etcd-venv/bin/etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 > /tmp/ab/wl.log 2>&1 &
fi
pid=$!; sleep 2
s0=$(awk '{print $14+$15}' /proc/$pid/stat)
/tmp/ab/strake-lc bench run watch-latency --endpoints 127.0.0.1:23790 --clients ${3:-100} --rate 500 --duration ${DUR:-10s} --key-space 10000 --quiet --json /tmp/ab/wl.json >/dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
python3 - $s0 $s1 $2 <<'PY'
import json,sys
s=(int(sys.argv[2])-int(sys.argv[1]))/100
j=json.load(open('/tmp/ab/wl.json')); j=j[0] if isinstance(j,list) else j
print(f"{sys.argv[3]:10s} events/s {j['ops_per_sec']:6.0f} p50 {j['p50_ms']:.2f} p90 {j['p90_ms']:.2f} p99 {j['p99_ms']:.2f} p999 {j['p999_ms']:.2f} server cpu {s:.2f}s")
PY
