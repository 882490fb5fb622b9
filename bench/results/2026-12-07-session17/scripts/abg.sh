#!/bin/bash
# usage: abg.sh WORKLOAD ROUNDS: the experiment binary with the durable gate (off) and without (nogate)
B=/tmp/ab/strake-exp
for i in $(seq 1 $2); do
  S=$B C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh gate $1 8s
  STRAKE_EXP_NOGATE=1 S=$B C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh nogate $1 8s
done
