#!/usr/bin/python3
"""median.py - pick the median run out of several weft-bench runs.

Reads the JSON lines of several `weft-bench --json` runs (files or stdin),
groups them by workload and, for each workload, names the run whose headline
figure is the median (write1: ratio_median; batch: ops_per_s; notes:
open_read_all.total_ms) and prints min / median / max across runs of the
figures docs/performance.md reports. Standard library only.

Invariants: none (reads its input, writes a report).
Thread-safety: a single-threaded script.

    for i in 1 2 3; do weft-bench --json >> runs.jsonl; done
    /usr/bin/python3 tools/bench/median.py runs.jsonl
"""
import json
import statistics
import sys

HEADLINE = {
    "write1": "ratio_median",
    "batch": "ops_per_s",
    "notes": "open_read_all.total_ms",
    "sync_initial": "ratio",
    "sync_incremental": "sizes.100000.fresh.ms_median",
    "sync_live": "one_way_ms.median",
    "reconnect": "session.ms_median",
}

FIGURES = {
    "write1": ["weft_us.median", "weft_us.p99", "raw_lmdb_us.median", "raw_lmdb_us.p99",
               "ratio_median", "ratio_p99"],
    "batch": ["ops_per_s", "txn_ops_per_s_median", "commit_share", "commit_ms_median",
              "disk_bytes"],
    "notes": ["build.ops_per_s", "open_read_one.total_ms", "open_read_one.open_ms",
              "open_read_one.read_ms", "open_read_all.total_ms", "open_read_all.open_ms",
              "open_read_all.read_ms", "open_read_one_cold.total_ms",
              "open_read_all_cold.total_ms", "rss_after_read_all_kb.rss",
              "rss_after_read_all_kb.anon", "rss_after_read_all_kb.file",
              "rss_after_read_all_kb.anon_at_start", "disk.bytes", "disk.allocated",
              "disk.log_payload_bytes"],
    "sync_initial": ["weft.converge_ms", "weft.live_ms", "weft.ops_per_s", "weft.wire_bytes",
                     "weft.wire_bytes_with_headers", "weft.engine_bytes_b", "weft.ops_batches",
                     "raw_curve.ms_median", "raw_curve.message_bytes", "ratio"],
    "sync_incremental": [f"sizes.{n}.{m}.{f}" for n in ("10000", "100000", "1000000")
                         for m in ("fresh", "push")
                         for f in ("ms_median", "slow_over_100ms", "wire_bytes_median",
                                   "wire_bytes_with_headers_median",
                                   "engine_payload_bytes_median")]
                        + [f"sizes.{n}.first_session_live_ms" for n in ("10000", "100000",
                                                                        "1000000")],
    "sync_live": ["one_way_ms.median", "one_way_ms.p99", "ack_ms.median", "ack_ms.p99",
                  "one_way_fast_ms.median", "one_way_fast_ms.p99", "slow_over_100ms",
                  "ops_measured", "commit_ms_median", "wire_bytes_per_op"],
    "reconnect": ["session.ms_median", "session.ms_max", "session.wire_bytes_median",
                  "session.wire_bytes_with_headers_median", "params.curve_handshake_bytes",
                  "weft_bytes_median"],
}


def get(obj, dotted):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def main(paths):
    runs = {}
    streams = [open(p) for p in paths] if paths else [sys.stdin]
    for f in streams:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            if rec.get("bench") in HEADLINE:
                runs.setdefault(rec["bench"], []).append(rec)
    for bench, recs in runs.items():
        key = HEADLINE[bench]
        recs = [r for r in recs if get(r, key) is not None]  # --quick runs lack some sizes
        if not recs:
            continue
        ordered = sorted(recs, key=lambda r: get(r, key))
        med = ordered[(len(ordered) - 1) // 2]
        print(f"== {bench}: {len(recs)} runs; median run by {key} = {get(med, key)}"
              f" (met: {get(med, 'targets.met')})")
        for fig in FIGURES[bench]:
            vals = [get(r, fig) for r in recs if get(r, fig) is not None]
            if not vals:
                continue
            print(f"  {fig:38} median-run {get(med, fig)!s:>12}   min {min(vals):>12}"
                  f"   median {statistics.median(vals):>12}   max {max(vals):>12}")


if __name__ == "__main__":
    main(sys.argv[1:])
