#!/bin/bash
# usage: cpu3lp.sh BIN LABEL WORKLOAD: cpu3.sh with perf record of the leader (4 s) during the run
BIN=$1; LABEL=$2; WL=${3:-put}; M=3
C=$HOME/.cache/strake/target/release/strake
D=/tmp/ab/data-$LABEL; rm -rf $D; mkdir -p $D
IC=""; for i in $(seq 1 $M); do IC="$IC,n$i=http://127.0.0.1:$((24800+i))"; done; IC=${IC#,}
PIDS=""; EPS=""
for i in $(seq 1 $M); do
  $BIN etcd --name n$i --data-dir $D/n$i --listen-client-urls http://127.0.0.1:$((24700+i)) --advertise-client-urls http://127.0.0.1:$((24700+i)) \
    --listen-peer-urls http://127.0.0.1:$((24800+i)) --initial-advertise-peer-urls http://127.0.0.1:$((24800+i)) --initial-cluster $IC >$D/n$i.log 2>&1 &
  PIDS="$PIDS $!"; EPS="$EPS,127.0.0.1:$((24700+i))"
done
EPS=${EPS#,}
sleep 3
L=$(for i in 1 2 3; do curl -s http://127.0.0.1:$((24700+i))/metrics | grep -q "^etcd_server_is_leader 1" && echo $i; done)
LP=$(echo $PIDS | cut -d' ' -f$L)
(sleep 2; perf record -F 1999 -g -p $LP -o /tmp/ab/s14/$LABEL.perf -- sleep 4 >/dev/null 2>&1) & PERFPID=$!
$C bench run $WL --endpoints $EPS --clients 64 --conns 8 --duration 8s --quiet --json /tmp/ab/$LABEL.json >/dev/null 2>&1
wait $PERFPID
kill $PIDS; wait $PIDS 2>/dev/null
python3 -c "import json; j=json.load(open('/tmp/ab/$LABEL.json')); j=j[0] if isinstance(j,list) else j; print('ops/s', round(j['ops_per_sec']))"
