#!/bin/bash
# usage: S=BIN sched.sh OUT: perf sched record 1 s of a single client at 200 puts/s
d=/tmp/ab/data-p1; rm -rf $d; $S etcd --data-dir $d --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 > /tmp/ab/p1.log 2>&1 &
pid=$!; sleep 1.5
/tmp/ab/strake-base bench run put --endpoints 127.0.0.1:23790 --clients 1 --conns 1 --rate 200 --duration 6s --quiet --json /tmp/ab/x.json >/dev/null 2>&1 &
c=$!; sleep 2; perf sched record -o /tmp/ab/s18/$1 -- sleep 1 >/dev/null 2>&1; wait $c; kill $pid; wait $pid 2>/dev/null
perf sched timehist -i /tmp/ab/s18/$1 -w 2>/dev/null | grep -v ' swapper\| perf\|sleep\[\|rcu_\|migration' > /tmp/ab/s18/$1.txt
