#!/bin/bash
# usage: dsprof.sh LABEL [keys]  -- dataset run with S=binary; perf-records the server during the overwrite phase
S=${S:-/tmp/ab/strake-s11}; L=$1; K=${2:-1000000}
rm -rf /var/tmp/dsp; 
$S bench dataset --server strake --binary $S --dir /var/tmp/dsp --keys $K --read-duration 5s --overwrite ${OW:-0.1} --json /tmp/ab/dsp-$L.json > /tmp/ab/dsp-$L.log 2>&1 &
B=$!
until grep -q "^read " /tmp/ab/dsp-$L.log 2>/dev/null; do sleep 0.5; done
PID=$(pgrep -P $B | head -1); ps -o args= -p $PID | cut -c1-100
perf record -F 499 -g -p $PID -o /tmp/ab/perf-$L.data -- sleep 5 2>&1 | tail -1
wait $B
du -sh /var/tmp/dsp >> /tmp/ab/dsp-$L.log; rm -rf /var/tmp/dsp
