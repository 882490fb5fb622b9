#!/bin/bash
# usage: ds2.sh VER... -- 2M-key dataset runs, alternating the given binaries; JSON ds2-VER-N.json
n=0
for v in "$@"; do
  n=$((n+1)); rm -rf /var/tmp/ds2
  /tmp/ab/strake-s12 bench dataset --server strake --binary /tmp/ab/strake-$v --dir /var/tmp/ds2 --keys 2000000 --read-duration 10s --overwrite 0.05 --quiet --json /tmp/ab/ds2-$v-$n.json > /tmp/ab/ds2-$v-$n.log 2>&1
  du -sh /var/tmp/ds2 >> /tmp/ab/ds2-$v-$n.log
  rm -rf /var/tmp/ds2
done
