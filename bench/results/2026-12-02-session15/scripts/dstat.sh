#!/bin/bash
# dstat.sh LABEL: samples /sys/block/vda/stat (writes, discards, flushes) every 0.5 s into dstat-LABEL.txt until killed
while true; do echo "$(date +%s.%N) $(cat /sys/block/vda/stat)"; sleep 0.5; done > dstat-$1.txt
