#!/bin/bash
# usage: ab4.sh WORKLOAD ROUNDS: alternates the experiment binary with knobs off / SORT / DELIVER / both
B=/tmp/ab/strake-exp
for i in $(seq 1 $2); do
  S=$B C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh off $1 8s
  STRAKE_EXP_SORT=1 S=$B C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh sort $1 8s
  STRAKE_EXP_DELIVER=1 S=$B C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh deliver $1 8s
  STRAKE_EXP_SORT=1 STRAKE_EXP_DELIVER=1 S=$B C=/tmp/ab/strake-base bash /tmp/ab/cpu.sh both $1 8s
done
