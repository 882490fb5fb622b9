#!/bin/bash
# usage: rd.sh VER LABEL -- 1M-key dataset, no overwrite, 15 s read phase (read throughput A/B)
S=/tmp/ab/strake-$1; rm -rf /var/tmp/dsr
$S bench dataset --server strake --binary $S --dir /var/tmp/dsr --keys 1000000 --read-duration 15s --overwrite 0 --quiet --json /tmp/ab/rd-$2.json > /tmp/ab/rd-$2.log 2>&1
rm -rf /var/tmp/dsr
