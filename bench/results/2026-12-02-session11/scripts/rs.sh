#!/bin/bash
# usage: rs.sh VER... -- restart-to-serving with 1M keys, compare's measurement, per binary
for v in "$@"; do
  /tmp/ab/strake-$v bench compare --members 1 --workloads put --duration 1s --warmup 0s --rounds 1 --restart-keys 1000000 --out /tmp/ab/rs-$v > /tmp/ab/rs-$v.log 2>&1
  grep -A4 "Restart with" /tmp/ab/rs-$v.log | tail -2 | sed "s/^/$v /"
done
