#!/bin/bash
# usage: ds3.sh VER... -- 2M-key load at a fixed 30k keys/s, alternating binaries; JSON ds3-VER-N.json
n=0
for v in "$@"; do
  n=$((n+1)); rm -rf /var/tmp/ds3
  /tmp/ab/strake-s12 bench dataset --server strake --binary /tmp/ab/strake-$v --dir /var/tmp/ds3 --keys 2000000 --load-rate ${RATE:-30000} --read-duration 2s --overwrite 0.01 --quiet --json /tmp/ab/ds3-$v-$n.json > /tmp/ab/ds3-$v-$n.log 2>&1
  rm -rf /var/tmp/ds3
done
