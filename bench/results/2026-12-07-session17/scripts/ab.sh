#!/bin/bash
# usage: ab.sh WORKLOAD PAIRS [DUR]: alternates /tmp/ab/strake-base and /tmp/ab/strake-lto (1 member, 64 clients)
for i in $(seq 1 $2); do
  for v in base lto; do S=/tmp/ab/strake-$v C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh $v $1 ${3:-8s}; done
done
