#!/bin/bash
# usage: run3.sh BIN LABEL WORKLOAD CLIENTS CONNS DURATION [members]
BIN=$1; LABEL=$2; WL=$3; C=$4; CONNS=$5; DUR=$6; M=${7:-3}
D=/tmp/ab/data-$LABEL; rm -rf $D; mkdir -p $D
IC=""; for i in $(seq 1 $M); do IC="$IC,n$i=http://127.0.0.1:$((24800+i))"; done; IC=${IC#,}
PIDS=""; EPS=""
for i in $(seq 1 $M); do
  $BIN etcd --name n$i --data-dir $D/n$i --listen-client-urls http://127.0.0.1:$((24700+i)) --advertise-client-urls http://127.0.0.1:$((24700+i)) \
    --listen-peer-urls http://127.0.0.1:$((24800+i)) --initial-advertise-peer-urls http://127.0.0.1:$((24800+i)) --initial-cluster $IC $EXTRA >$D/n$i.log 2>&1 &
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
$BIN bench run $WL --endpoints $EPS --clients $C --conns $CONNS --duration $DUR ${RATE:+--rate $RATE} --quiet --json /tmp/ab/$LABEL.json >/dev/null 2>&1
kill $PIDS; wait $PIDS 2>/dev/null
python3 /tmp/ab/summ.py /tmp/ab/$LABEL.json $LABEL
