# put 64 clients, 1 member: server-side handling time (grpc_server_handling_seconds) vs client latency
S=${S:-/tmp/ab/strake-gm}
rm -rf /tmp/p; $S etcd --metrics extensive --data-dir /tmp/p --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 >/tmp/p.log 2>&1 &
PID=$!; sleep 2
m() { curl -s 127.0.0.1:23790/metrics | grep -E "^grpc_server_handling_seconds_(sum|count)\{.*Put|^strake_apply_entry_duration_seconds_(sum|count)|^etcd_disk_wal_fsync_duration_seconds_(sum|count)" | sed 's/{[^}]*}//' ; }
m > /tmp/ab/m0
$S bench run ${1:-put} --endpoints 127.0.0.1:23790 --clients ${C:-64} --duration 6s --key-space 10000 --quiet --json /tmp/ab/m.json >/dev/null 2>&1
m > /tmp/ab/m1
python3 /tmp/ab/summ.py /tmp/ab/m.json "${1:-put}"; kill $PID; wait $PID 2>/dev/null
python3 - <<'PY'
a=dict(l.split() for l in open('/tmp/ab/m0')); b=dict(l.split() for l in open('/tmp/ab/m1'))
d={k:float(b[k])-float(a.get(k,0)) for k in b}
def mean(p): return d[p+'_sum']/max(d[p+'_count'],1)*1e6
import json; j=json.load(open('/tmp/ab/m.json')); j=j[0] if isinstance(j,list) else j
print(f"server handling mean {mean('grpc_server_handling_seconds'):.0f} us over {d['grpc_server_handling_seconds_count']:.0f} puts; client mean {j.get('mean_ms',0)*1000:.0f} us; apply/entry {mean('strake_apply_entry_duration_seconds'):.0f} us; fsync {mean('etcd_disk_wal_fsync_duration_seconds'):.0f} us; entries {d['strake_apply_entry_duration_seconds_count']:.0f}")
PY
