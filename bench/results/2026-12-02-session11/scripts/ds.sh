#!/bin/bash
# usage: VERS="lim base" ds.sh -- 2M-key datasets, one per binary /tmp/ab/strake-VER, one after the other
for v in ${VERS:-lim base}; do
  rm -rf /var/tmp/ds-$v
  /tmp/ab/strake-$v bench dataset --server strake --binary /tmp/ab/strake-$v --dir /var/tmp/ds-$v --keys 2000000 --read-duration 10s --overwrite 0.05 --json /tmp/ab/ds-$v.json > /tmp/ab/ds-$v.log 2>&1
  du -sh /var/tmp/ds-$v >> /tmp/ab/ds-$v.log
  rm -rf /var/tmp/ds-$v
done
