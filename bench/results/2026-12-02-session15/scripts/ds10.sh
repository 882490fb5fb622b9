#!/bin/bash
# usage: ds10.sh VER LABEL [extra dataset args] -- 10M-key load (stop after the load phase) with /tmp/ab/strake-VER;
# report ds10-LABEL.json/.log, RocksDB throttling vs stalls in ds10-LABEL.corr
v=$1; l=$2; shift 2
cd /tmp/ab/s15 && rm -rf /var/tmp/ds10
vmstat -t 1 > vm-$l.txt & VM=$!
/tmp/ab/strake-hold bench dataset --server strake --binary /tmp/ab/strake-$v --dir /var/tmp/ds10 --keys 10000000 \
  --read-duration 10s --stop-after load --quiet --json ds10-$l.json "$@" > ds10-$l.log 2>&1
python3 corr.py ds10-$l.json /var/tmp/ds10/n1/data/member/store/gen-0/LOG > ds10-$l.corr 2>&1
grep -c "held for the store" /var/tmp/ds10/n1/server.log >> ds10-$l.corr
cp /var/tmp/ds10/n1/server.log srv-$l.log; cp /var/tmp/ds10/n1/data/member/store/gen-0/LOG rocks-$l.LOG; kill $VM 2>/dev/null
rm -rf /var/tmp/ds10
