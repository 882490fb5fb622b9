#!/bin/bash
# usage: dss.sh VER LABEL -- 1M keys, 30% overwritten, 30 s settle between phases; client strake-dp2, server strake-VER
S=/tmp/ab/strake-$1; rm -rf /var/tmp/dss
/tmp/ab/strake-dp2 bench dataset --server strake --binary $S --dir /var/tmp/dss --keys 1000000 --read-duration 5s --overwrite 0.3 --settle ${SETTLE:-30s} --quiet --json /tmp/ab/dss-$2.json > /tmp/ab/dss-$2.log 2>&1
rm -rf /var/tmp/dss
