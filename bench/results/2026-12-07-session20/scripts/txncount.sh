#!/bin/bash
# usage: S=BIN [PUTKEY=key] txncount.sh LABEL: 1-member strake with 300k keys; times a write txn whose range counts the whole keyspace (limit 1), and a plain range with limit 1 and count
d=/tmp/ab/data-tc; rm -rf $d
$S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/tc.log 2>&1 &
pid=$!; sleep 1.5
/tmp/ab/strake-s20base bench run put --endpoints 127.0.0.1:23790 --clients 64 --conns 8 --key-size 16 --key-space 300000 --total 900000 --val-size 64 --quiet --json /tmp/ab/tc.json >/dev/null 2>&1
E="etcdctl --endpoints 127.0.0.1:23790"
$E get k --prefix --limit=1 -w json | python3 -c "import json,sys; print('keys', json.load(sys.stdin)['count'])"
for i in 1 2 3 4 5; do
  t0=$(date +%s%N)
  printf "\nput ${PUTKEY:-/x} %d\nget k --prefix --limit=1\n\n\n" $i | $E txn -w json > /tmp/ab/tc-out.json
  t1=$(date +%s%N)
  $E get k --prefix --limit=1 -w json > /dev/null
  t2=$(date +%s%N)
  echo "$1 txn $(( (t1-t0)/1000 )) us  range $(( (t2-t1)/1000 )) us"
done
python3 -c "import json; j=json.load(open('/tmp/ab/tc-out.json')); r=j['responses'][1]['Response']['ResponseRange']; print('count', r['count'], 'more', r.get('more'))" | cut -c1-200
kill $pid; wait $pid 2>/dev/null
