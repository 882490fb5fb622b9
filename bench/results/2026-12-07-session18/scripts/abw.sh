#!/bin/bash
# usage: abw.sh WORKLOAD PAIRS "W1 W2 ..." : alternates server tokio worker counts (1 member, 64 clients)
for i in $(seq 1 $2); do
  for w in $3; do S="env TOKIO_WORKER_THREADS=$w /tmp/ab/strake-base" C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh w$w $1 ${DUR:-8s}; done
done
