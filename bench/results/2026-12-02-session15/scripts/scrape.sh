#!/bin/bash
# scrape.sh LABEL: every 5 s, saves the running strake server's /metrics to metrics-LABEL.txt (the last scrape wins)
while true; do
  url=$(pgrep -af "strake-.* etcd --name" | grep -o 'listen-client-urls=[^ ]*' | head -1 | cut -d= -f2)
  [ -n "$url" ] && curl -s -m 2 $url/metrics > metrics-$1.tmp && [ -s metrics-$1.tmp ] && mv metrics-$1.tmp metrics-$1.txt
  sleep 5
done
