import json,sys
d=json.load(open(sys.argv[1]))
print("%-10s ops/s %8.0f p50 %.3f p99 %.3f max %.1f err %s" % (sys.argv[2], d["ops_per_sec"], d["p50_ms"], d["p99_ms"], d["max_ms"], d["errors"]))
