# usage: k8s.sh LABEL : 1 member k8s-mix, 3 s warm-up run then 10 s measured (like compare); ENVV for server
S=${S:-/tmp/ab/strake-sf}
rm -rf /tmp/p; env $ENVV $S etcd --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!; sleep 2
$S bench run k8s-mix --endpoints 127.0.0.1:23790 --clients 64 --duration 3s --key-space 10000 --quiet >/dev/null 2>&1
s0=$(awk '{print $14+$15}' /proc/$PID/stat)
$S bench run k8s-mix --endpoints 127.0.0.1:23790 --clients 64 --duration 10s --key-space 10000 --quiet --json /tmp/ab/k.json >/dev/null 2>&1
s1=$(awk '{print $14+$15}' /proc/$PID/stat)
python3 /tmp/ab/summ.py /tmp/ab/k.json "$1 cpu=$(( (s1-s0) ))cs flushes=$(grep -c 'Flushing\|flush_started' /tmp/p/member/store/*/LOG 2>/dev/null | tail -1)"; kill $PID; wait $PID 2>/dev/null
