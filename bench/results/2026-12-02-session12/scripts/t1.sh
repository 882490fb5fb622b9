# usage: t1.sh WORKLOAD LABEL -- 1 member, preload handled by bench run
S=${S:-/tmp/ab/strake-yb}
rm -rf /tmp/p; env $ENVV $S etcd --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster default=http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!; sleep 2
$S bench run $1 --endpoints 127.0.0.1:23790 --clients ${C:-64} --duration ${DUR:-6s} --key-space 10000 --quiet --json /tmp/ab/m.json >/dev/null 2>&1
python3 /tmp/ab/summ.py /tmp/ab/m.json "$2"; kill $PID; wait $PID 2>/dev/null
