#!/bin/bash
# max_compaction_bytes 256 MiB (mc) against the final code (s15), alternating
cd /tmp/ab/s15
export STRAKE_LOG="info,openraft=warn,strake_raft::admission=debug"
STRAKE_MAX_COMPACTION_MB=256 ./ds10.sh mc mc1
./ds10.sh s15 d2
STRAKE_MAX_COMPACTION_MB=256 ./ds10.sh mc mc2
