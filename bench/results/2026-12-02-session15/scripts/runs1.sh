#!/bin/bash
cd /tmp/ab/s15
export STRAKE_LOG="info,openraft=warn,strake_raft::admission=debug,strake_raft::node=trace"
STRAKE_BG_JOBS=3 STRAKE_BG_LOWPRI=1 ./ds10.sh hk2 lp3
STRAKE_BG_JOBS=3 ./ds10.sh hk2 hk3b
STRAKE_BG_JOBS=3 STRAKE_BG_LOWPRI=1 ./ds10.sh hk2 lp3b
