#!/bin/bash
# dirty.sh LABEL: samples nr_dirty / nr_writeback (pages) every 0.5 s into dirty-LABEL.txt until killed
while true; do echo "$(date +%s.%N) $(grep -E '^nr_dirty |^nr_writeback ' /proc/vmstat | awk '{printf "%s ", $2}')"; sleep 0.5; done > dirty-$1.txt
