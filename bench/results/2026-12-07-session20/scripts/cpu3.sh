#!/bin/bash
# usage: cpu3.sh BIN LABEL WORKLOAD: 3 members, 64 clients over 8 conns, 8 s; ops/s, p99,
# CPU per op of each member and of the client.
#   LEADER=1 / LEADER=0: clients on the leader only / on one follower only (default: all members)
#   METRICS=1: print each member's forwarding metrics at the end
#   PERF=1: perf record the leader for 4 s into /tmp/ab/s20/LABEL.perf
BIN=$1; LABEL=$2; WL=${3:-put}; M=3
C=/tmp/ab/strake-s20base
D=/tmp/ab/data-$LABEL; rm -rf $D; mkdir -p $D
IC=""; for i in $(seq 1 $M); do IC="$IC,n$i=http://127.0.0.1:$((24800+i))"; done; IC=${IC#,}
PIDS=""; EPS=""
for i in $(seq 1 $M); do
  if [ "$BIN" = etcd ]; then
  $HOME/.cache/strake/etcd-venv/bin/etcd --name n$i --data-dir $D/n$i --listen-client-urls http://127.0.0.1:$((24700+i)) --advertise-client-urls http://127.0.0.1:$((24700+i)) \
    --listen-peer-urls http://127.0.0.1:$((24800+i)) --initial-advertise-peer-urls http://127.0.0.1:$((24800+i)) --initial-cluster $IC >$D/n$i.log 2>&1 &
  else
  $BIN etcd --name n$i --data-dir $D/n$i --listen-client-urls http://127.0.0.1:$((24700+i)) --advertise-client-urls http://127.0.0.1:$((24700+i)) \
    --listen-peer-urls http://127.0.0.1:$((24800+i)) --initial-advertise-peer-urls http://127.0.0.1:$((24800+i)) --initial-cluster $IC >$D/n$i.log 2>&1 &
  fi
  PIDS="$PIDS $!"; EPS="$EPS,127.0.0.1:$((24700+i))"
done
EPS=${EPS#,}
sleep 3
if [ -n "$LEADER" ]; then
  EPS=$(ETCDCTL_API=3 etcdctl --endpoints=$EPS endpoint status -w json 2>/dev/null | python3 -c "
import json,sys
for e in json.load(sys.stdin):
  if (e['Status']['header']['member_id']==e['Status']['leader'])==('$LEADER'=='1'): print(e['Endpoint']); break")
fi
if [ "$PERF" = all ]; then
  (sleep 2; perf record -F 999 -a -g -o /tmp/ab/s20/$LABEL.perf -- sleep 4 >/dev/null 2>&1) &
  PERFPID=$!
elif [ "$PERF" = follower ]; then
  L=$(for i in 1 2 3; do curl -s http://127.0.0.1:$((24700+i))/metrics | grep -q "^etcd_server_is_leader 0" && echo $i; done | head -1)
  (sleep 2; perf record -F 999 --call-graph dwarf,16384 -p $(echo $PIDS | cut -d' ' -f$L) -o /tmp/ab/s20/$LABEL.perf -- sleep 3 >/dev/null 2>&1) &
  PERFPID=$!
elif [ -n "$PERF" ]; then
  L=$(for i in 1 2 3; do curl -s http://127.0.0.1:$((24700+i))/metrics | grep -q "^etcd_server_is_leader 1" && echo $i; done)
  (sleep 2; perf record -F 1999 -g -p $(echo $PIDS | cut -d' ' -f$L) -o /tmp/ab/s20/$LABEL.perf -- sleep 4 >/dev/null 2>&1) &
  PERFPID=$!
fi
cpu() { for p in $PIDS; do awk '{printf "%d ", $14+$15}' /proc/$p/stat; done; }
a=$(cpu)
/usr/bin/time -f "%U %S" -o /tmp/ab/ctime3.txt $C bench run $WL --endpoints $EPS --clients ${CLIENTS:-64} --conns ${CONNS:-8} --duration 8s --quiet --json /tmp/ab/$LABEL.json >/dev/null 2>&1
b=$(cpu)
[ -n "$PERF" ] && wait $PERFPID
if [ -n "$METRICS" ]; then
  for i in 1 2 3; do curl -s http://127.0.0.1:$((24700+i))/metrics | grep -E "^strake_forward_batch_writes_(sum|count)|^strake_forwarded_writes_total" | tr "\n" " "; echo; done
fi
kill $PIDS; wait $PIDS 2>/dev/null
python3 - "$a" "$b" $LABEL <<'PY'
import json,sys
a=list(map(int,sys.argv[1].split())); b=list(map(int,sys.argv[2].split()))
u,k=map(float,open('/tmp/ab/ctime3.txt').read().split()[:2])
j=json.load(open(f'/tmp/ab/{sys.argv[3]}.json')); j=j[0] if isinstance(j,list) else j
ops=j['ops']
per=[ (y-x)/100/ops*1e6 for x,y in zip(a,b)]
print(f"{sys.argv[3]:8s} ops/s {j['ops_per_sec']:.0f} p99 {j['p99_ms']:.1f}ms  member CPU us/op {' '.join(f'{p:.0f}' for p in per)} (sum {sum(per):.0f})  client {(u+k)/ops*1e6:.0f} us/op")
PY
