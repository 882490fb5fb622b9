#!/bin/bash
# usage: S=BIN cg.sh LABEL [N]: 1-member strake under callgrind; N puts (default 4000) from 8 clients; prints total instructions
d=/tmp/ab/data-cg; rm -rf $d
valgrind --tool=callgrind --callgrind-out-file=/tmp/ab/s20/cg-$1.out $S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/cg.log 2>&1 &
pid=$!
for i in $(seq 1 120); do etcdctl --endpoints 127.0.0.1:23790 endpoint health >/dev/null 2>&1 && break; sleep 1; done
/tmp/ab/strake-s20base bench run ${W:-put} --endpoints 127.0.0.1:23790 --clients 8 --conns 2 --total ${2:-4000} --duration 600s --quiet --json /tmp/ab/cg.json >/dev/null 2>&1
kill $pid; wait $pid 2>/dev/null
grep -h "summary\|totals" /tmp/ab/s20/cg-$1.out* | head -3
