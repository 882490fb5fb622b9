#!/bin/bash
# usage: abx.sh A B WORKLOAD PAIRS [DUR]: alternates /tmp/ab/strake-A and /tmp/ab/strake-B (1 member, 64 clients)
for i in $(seq 1 $4); do
  for v in $1 $2; do S=/tmp/ab/strake-$v C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh $v $3 ${5:-8s}; done
done
