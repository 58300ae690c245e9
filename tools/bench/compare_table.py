#!/usr/bin/python3
"""compare_table.py - render weft beside Automerge, automerge-repo and Yjs.

Reads the JSON lines that tools/bench/compare.sh collected (weft-bench --json
lines, which carry no "system" key, and the lines of tools/bench/peers/*.mjs,
which carry "system": "automerge" | "automerge-repo" | "yjs"; plus the
"compare" lines compare.sh adds: the run's metadata and failed steps) and
writes a markdown page: the machine and versions, one table of workloads
(rows) by system (columns), the issue's targets met or not, and what each
system does and does not guarantee. Standard library only.

    /usr/bin/python3 tools/bench/compare_table.py RESULTS.jsonl > docs/performance-compare.md

When a workload ran more than once, the last line wins. A figure that is
absent reads "n/m" (not measured), with the reason in the notes when known.

Invariants: reads its input, writes the page on stdout; exit 0 unless the
input cannot be read (1) or the arguments are wrong (2).
Thread-safety: a single-threaded script.
"""
import json
import sys

SYSTEMS = ["weft", "automerge", "automerge-repo", "yjs"]
TITLES = {"weft": "weft", "automerge": "Automerge", "automerge-repo": "automerge-repo", "yjs": "Yjs"}
DEFAULT_SIZES = [1000, 10000, 100000]  # notes; --quick runs 100 and 1,000
NM = "n/m"


def load(paths):
    """{system: {bench: obj}}, headers {system: obj}, compare lines."""
    res = {s: {} for s in SYSTEMS}
    heads = {}
    meta = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                b = o.get("bench")
                sysname = o.get("system", "weft")
                if b == "compare":
                    meta.append(o)
                elif b == "header":
                    heads[sysname] = o
                elif sysname in res and b:
                    res[sysname][b] = o
    return res, heads, meta


def get(o, path, default=None):
    """o["a"]["b"]... for path "a.b"; default when any step is missing."""
    for k in path.split("."):
        if not isinstance(o, dict) or k not in o:
            return default
        o = o[k]
    return o


def find_key(o, names):
    """The first value under a key in @p names, searched depth-first."""
    if isinstance(o, dict):
        for n in names:
            if n in o and isinstance(o[n], (int, float)):
                return o[n]
        for v in o.values():
            r = find_key(v, names)
            if r is not None:
                return r
    return None


def ms(x):
    if x is None:
        return NM
    if x >= 100:
        return f"{x:,.0f} ms"
    if x >= 10:
        return f"{x:.1f} ms"
    if x >= 1:
        return f"{x:.2f} ms"
    return f"{x:.3f} ms"


def nbytes(x):
    if x is None:
        return NM
    if x >= 1e9:
        return f"{x / 1e9:.2f} GB"
    if x >= 1e6:
        return f"{x / 1e6:.2f} MB"
    if x >= 1e4:
        return f"{x / 1e3:.0f} kB"
    return f"{x:,.0f} B"


def rate(x):
    return NM if x is None else f"{x:,.0f} ops/s"


def ratio(a, b):
    """a / b, or None."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def met(flag):
    return {True: "**met**", False: "**missed**", None: "not measured"}[flag]


class Page:
    def __init__(self, res, heads, meta):
        self.r = res
        self.h = heads
        self.meta = meta
        self.lines = []
        self.notes = []
        # The sizes (notes) of the small-change and reconnect rows, and the
        # notes count of the 10,000-note workloads (1,000 with --quick).
        sizes = set()
        for sysname in ("automerge", "automerge-repo", "yjs"):
            for b in ("small_change", "reconnect"):
                sizes.update(int(k) for k in (get(res[sysname].get(b), "sizes") or {}))
        sizes.update(int(k) // 10 for k in (get(res["weft"].get("sync_incremental"), "sizes") or {}))
        self.sizes = sorted(sizes) or DEFAULT_SIZES
        self.big = max(self.sizes)
        self.n = (get(res["weft"].get("notes"), "params.notes")
                  or next((get(res[x].get("write"), "params.notes") for x in ("yjs", "automerge")
                           if get(res[x].get("write"), "params.notes")), None) or 10000)

    def out(self, s=""):
        self.lines.append(s)

    # ---- figures, per system ----

    def w(self, bench, path, default=None):
        return get(self.r["weft"].get(bench), path, default)

    def p(self, system, bench, path):
        return get(self.r[system].get(bench), path)

    def weft_size(self, notes):
        """sync_incremental's entry for @p notes (keyed by op count, ~10 per note)."""
        sizes = self.w("sync_incremental", "sizes") or {}
        return sizes.get(str(notes * 10))

    def weft_merge(self):
        o = self.r["weft"].get("merge")
        if not o:
            return None
        return find_key(o, ["merge_ms", "converge_ms", "ms_median", "total_ms", "ms"])

    # ---- the page ----

    def render(self):
        self.header()
        self.table()
        self.targets()
        self.guarantees()
        self.method()
        return "\n".join(self.lines) + "\n"

    def header(self):
        m = next((x for x in self.meta if x.get("what") == "run"), {})
        wh = self.h.get("weft", {})
        ph = next((self.h[s] for s in ("yjs", "automerge", "automerge-repo") if s in self.h), {})
        pk = {}
        for s in ("automerge", "automerge-repo", "yjs"):
            pk.update(self.h.get(s, {}).get("packages", {}))
        self.out("# weft beside Automerge, automerge-repo and Yjs")
        self.out()
        self.out("Generated by `tools/bench/compare.sh` (tables by `tools/bench/compare_table.py`);"
                 " do not edit by hand: run it again. The workloads are weft-bench's notes workloads"
                 " (`docs/performance.md`), rebuilt on each system in `tools/bench/peers/`.")
        self.out()
        self.out("| | |")
        self.out("|---|---|")
        self.out(f"| date (UTC) | {m.get('date') or wh.get('date') or ph.get('date', '?')} |")
        self.out(f"| machine | {wh.get('cpu') or ph.get('cpu', '?')}, {wh.get('nproc') or ph.get('nproc', '?')} CPUs"
                 f" (`nproc`), {m.get('mem', '?')}, {ph.get('kernel') or wh.get('kernel', '?')};"
                 " shared with other jobs, so times are noisy |")
        if m.get("loadavg"):
            self.out(f"| load average at start | {m['loadavg']} |")
        self.out(f"| weft | commit `{m.get('weft_commit', '?')}`, `weft-bench` CMake Release,"
                 f" stores in `{wh.get('dir', m.get('dir', '?'))}` ({wh.get('fs', '?')}),"
                 f" {wh.get('lmdb', 'LMDB ?')} |")
        self.out(f"| Node.js | {ph.get('node', '?')} (V8 {ph.get('v8', '?')}) |")
        self.out("| npm packages (exact, `tools/bench/peers/package-lock.json`) | " +
                 ", ".join(f"{k} {v}" for k, v in sorted(pk.items())) + " |")
        if m.get("mode"):
            self.out(f"| mode | {m['mode']} |")
        self.out()
        for x in self.meta:
            if x.get("what") == "failed":
                self.notes.append(f"step `{x.get('step')}` failed (exit {x.get('rc')}): its figures are n/m.")

    def row(self, label, cells):
        self.out("| " + label + " | " + " | ".join(cells) + " |")

    def table(self):
        R = self.r
        self.out("## Results")
        self.out()
        self.out("weft is **durable** (every transaction committed to LMDB on disk before it returns) and"
                 " syncs between **two processes over TCP with CURVE**; Automerge and Yjs run **in memory**"
                 " and their sync protocols **in one process, without transport** (bytes are the protocol's"
                 " messages, time is CPU only); automerge-repo runs **in memory** between **two processes"
                 " over a loopback WebSocket** (no TLS). n/m: not measured; -: not applicable.")
        self.out()
        self.row("workload", [TITLES[s] for s in SYSTEMS])
        self.out("|---|" + "---|" * len(SYSTEMS))

        # write
        nb = self.w("notes", "build.ops_per_s")
        w1 = self.w("write1", "weft_us.median")
        N = f"{self.n:,}"
        self.row(f"**write**: the {N}-note build ({self.n * 10 - 1:,} ops) in weft's transactions"
                 " (2,000-note / 10,000-op)",
                 [rate(nb) + " durable" if nb else NM,
                  rate(self.p("automerge", "write", "batched.ops_per_s")), "-",
                  rate(self.p("yjs", "write", "batched.ops_per_s"))])
        self.row("write: one transaction per op",
                 [(rate(1e6 / w1) + f" durable ({w1:.0f} µs per commit)") if w1 else NM,
                  rate(self.p("automerge", "write", "per_op.ops_per_s")), "-",
                  rate(self.p("yjs", "write", "per_op.ops_per_s"))])
        self.row("write: 20 transactions of 10,000 ops (`batch`)",
                 [rate(self.w("batch", "ops_per_s")) + " durable" if self.w("batch", "ops_per_s") else NM,
                  "-", "-", "-"])
        self.row(f"**storage**: {N} notes with their history",
                 [(nbytes(self.w("notes", "app_sized.bytes")) + " on disk, written as an app does"
                   " (25 notes, then 100 edits, per transaction)"
                   + (f"; built in 10,000-op transactions the file is {nbytes(self.w('notes', 'disk.bytes'))},"
                      f" {nbytes(self.w('notes', 'physical.live_bytes'))} of it live"
                      if self.w("notes", "disk.bytes") and self.w("notes", "physical.live_bytes") else "")
                   + (f" (op log payload {nbytes(self.w('notes', 'disk.log_payload_bytes'))})"
                      if self.w("notes", "disk.log_payload_bytes") else "")) if self.w("notes", "app_sized.bytes") else NM,
                  nbytes(self.p("automerge", "write", "storage.saved_bytes")) + " `save()`"
                  if self.p("automerge", "write", "storage.saved_bytes") else NM,
                  "-",
                  (nbytes(self.p("yjs", "write", "storage.encoded_v1_bytes")) + " `encodeStateAsUpdate`"
                   + f" (V2 {nbytes(self.p('yjs', 'write', 'storage.encoded_v2_bytes'))})")
                  if self.p("yjs", "write", "storage.encoded_v1_bytes") else NM])
        # load
        self.row(f"**load + read all** {N} notes, fresh process",
                 [ms(self.w("notes", "open_read_all.total_ms")),
                  ms(self.p("automerge", "load", "load_read_all.total_ms")), "-",
                  ms(self.p("yjs", "load", "load_read_all.total_ms"))])
        self.row("load + read all, warm (in process; weft: open + scan, page cache warm)",
                 [ms(self.w("notes", "open_read_all.total_ms")),
                  ms(self.p("automerge", "load", "load_read_all_warm_in_process.total_ms")), "-",
                  ms(self.p("yjs", "load", "load_read_all_warm_in_process.total_ms"))])
        self.row("load + read one note, fresh process",
                 [ms(self.w("notes", "open_read_one.total_ms")),
                  ms(self.p("automerge", "load", "load_read_one.total_ms")), "-",
                  ms(self.p("yjs", "load", "load_read_one.total_ms"))])
        rss = self.w("notes", "rss_after_read_all_kb.rss")
        anon = self.w("notes", "rss_after_read_all_kb.anon")
        self.row("memory after reading all (RSS of the process)",
                 [f"{nbytes(rss * 1024)} (anonymous {nbytes(anon * 1024)})" if rss is not None else NM,
                  self.js_mem("automerge"), "-", self.js_mem("yjs")])
        # initial sync
        self.row(f"**initial sync** of {N} notes: time to converge",
                 [ms(self.w("sync_initial", "weft.converge_ms")),
                  ms(self.p("automerge", "initial_sync", "converge_ms")),
                  ms(self.p("automerge-repo", "initial_sync", "converge_ms")),
                  ms(self.p("yjs", "initial_sync", "converge_ms"))])
        self.row("initial sync: bytes",
                 [nbytes(self.w("sync_initial", "weft.wire_bytes")),
                  nbytes(self.p("automerge", "initial_sync", "bytes")),
                  nbytes(self.p("automerge-repo", "initial_sync", "bytes")),
                  nbytes(self.p("yjs", "initial_sync", "bytes"))])
        # small change
        for n in self.sizes:
            ws = self.weft_size(n) or {}
            a = self.p("automerge", "small_change", f"sizes.{n}") or {}
            ar = self.p("automerge-repo", "small_change", f"sizes.{n}") or {}
            y = self.p("yjs", "small_change", f"sizes.{n}") or {}
            self.row(f"**small change**, live session, {n:,} notes: time / bytes",
                     [self.tb(get(ws, "push.ms_median"), get(ws, "push.wire_bytes_median")),
                      self.tb(get(a, "live.ms_median"), get(a, "live.bytes_median")),
                      self.tb(get(ar, "push.ms_median"), get(ar, "push.bytes_median")),
                      self.tb(get(y, "push.ms_median"), get(y, "push.bytes_median"))])
        for n in self.sizes:
            ws = self.weft_size(n) or {}
            a = self.p("automerge", "small_change", f"sizes.{n}") or {}
            ar = self.p("automerge-repo", "small_change", f"sizes.{n}") or {}
            y = self.p("yjs", "small_change", f"sizes.{n}") or {}
            self.row(f"small change, new session (reconnect + 1 change), {n:,} notes",
                     [self.tb(get(ws, "fresh.ms_median"), get(ws, "fresh.wire_bytes_median")),
                      self.tb(get(a, "fresh_states.ms_median"), get(a, "fresh_states.bytes_median"))
                      + (f"; sync states kept: {self.tb(get(a, 'restored_states.ms_median'), get(a, 'restored_states.bytes_median'))}"
                         if get(a, "restored_states") else ""),
                      self.tb(get(ar, "fresh.ms_median"), get(ar, "fresh.bytes_median")),
                      self.tb(get(y, "fresh.ms_median"), get(y, "fresh.bytes_median"))])
        # reconnect
        for n in self.sizes:
            a = self.p("automerge", "reconnect", f"sizes.{n}") or {}
            ar = self.p("automerge-repo", "reconnect", f"sizes.{n}") or {}
            y = self.p("yjs", "reconnect", f"sizes.{n}") or {}
            self.row(f"**reconnect** when in sync, {n:,} notes: time / bytes",
                     [self.weft_reconnect(n),
                      self.tb(get(a, "fresh_states.ms_median"), get(a, "fresh_states.bytes_median")),
                      self.tb(get(ar, "ms_median"), get(ar, "bytes_median")),
                      self.tb(get(y, "ms_median"), get(y, "bytes_median"))])
        # merge
        wm = self.weft_merge()
        if wm is None:
            self.notes.append("weft merge: `weft-bench` has no `merge` workload in this build"
                              f" (two diverged {self.n:,}-note replicas applying each other's ops); n/m.")
        for vname, label, am, yv in (("per_edit", "one transaction per edit", "per_edit", "per_edit"),
                                      ("per_side", "one transaction per side", "one_change_per_side",
                                       "one_txn_per_side")):
            self.row(f"**merge** two diverged {N}-note replicas ({self.n // 2:,} edits each, {self.n // 4:,} notes"
                     f" edited on both), {label}",
                     [ms(wm) if vname == "per_edit" else "-" if wm is None else "(see above)",
                      self.am_merge(am), "-", self.yjs_merge(yv)])
        tenth = self.p("automerge", "merge", "variants.per_edit_tenth")
        if tenth:
            e = tenth.get("edits_per_side", 0)
            self.row(f"merge, a tenth of the edits ({e:,} each, {e // 2:,} notes edited on both), one transaction"
                     " per edit", ["-", self.am_merge("per_edit_tenth"), "-", "-"])
        self.out()
        am_pw = self.p("automerge", "write", "per_op")
        if am_pw and am_pw.get("partial"):
            self.notes.append(f"Automerge, one change per op: stopped after {am_pw['budget_ms'] / 1e3:.0f} s, at"
                              f" {am_pw['ops_done']:,} of {self.p('automerge', 'write', 'params.ops'):,} ops; the rate is"
                              " over those ops (each change gets slower as the document grows, so the full build"
                              " would be slower still).")
        v = self.p("automerge", "merge", "variants.per_edit") or {}
        sides = v.get("sides") or []
        if sides:
            what = (f"`merge()` then failed: {v['error']}" if v.get("error") else
                    f"{nbytes(v.get('process_external_bytes_after_merge'))} after `merge()` applied the other side's")
            self.notes.append(
                "Automerge's wasm heap grows with every change made on or applied to a large document until"
                f" it is saved and loaded again (and is never given back; wasm32 caps it at 4 GB):"
                f" {nbytes(sides[0]['process_external_bytes_after_edits'])} after"
                f" {self.p('automerge', 'merge', 'params.edits_per_side'):,} single-edit changes on the"
                f" {self.n:,}-note document; {what}. Each side's edits and each direction of the merge therefore"
                " run in a process of their own, on loads of the saved sides.")
        for s in ("automerge", "automerge-repo", "yjs"):
            if not self.r[s]:
                self.notes.append(f"{TITLES[s]}: no results in this run.")
        if self.notes:
            self.out("Notes on this run:")
            self.out()
            for n in self.notes:
                self.out(f"- {n}")
            self.out()

    def am_merge(self, variant):
        v = self.p("automerge", "merge", f"variants.{variant}")
        if v is None:
            # An older line without variants: its headline only.
            m = self.p("automerge", "merge", "merge_ms")
            return NM if m is None or variant != "per_edit" else ms(m) + " `merge()` both ways"
        if v.get("merge_ms") is None:
            ab = v.get("merge_a_from_b_ms_before_the_failure")
            return "failed: " + v.get("error", "?") + (f" (a <- b had taken {ms(ab)})" if ab is not None else "")
        out = ms(v["merge_ms"]) + " `merge()` both ways"
        sy = v.get("sync") or {}
        if sy.get("ms") is not None:
            out += f"; sync protocol {ms(sy['ms'])}, {nbytes(sy['bytes'])}"
        elif sy.get("error") or sy.get("skipped"):
            out += f"; sync protocol: {sy.get('error') or sy.get('skipped')}"
        return out

    def yjs_merge(self, variant):
        v = self.p("yjs", "merge", f"variants.{variant}")
        if v is None:
            m = self.p("yjs", "merge", "merge_ms")
            return NM if m is None or variant != "per_edit" else f"{ms(m)}, {nbytes(self.p('yjs', 'merge', 'bytes'))}"
        return f"{ms(v['merge_ms'])}, {nbytes(v['bytes'])}"

    def tb(self, t, b):
        if t is None and b is None:
            return NM
        return f"{ms(t)} / {nbytes(b)}"

    def js_mem(self, system):
        m = self.p(system, "load", "memory_after_read_all")
        if not m:
            return NM
        return f"{nbytes(m['rss'])} (JS heap {nbytes(m['heap_used'])}, external {nbytes(m['external'])})"

    def weft_reconnect(self, n):
        """weft's reconnect figure at @p n notes: sync_incremental's in-sync
        sessions at each size; without them the reconnect workload (10,000
        notes), and at other sizes the fresh session of sync_incremental
        (reconnect + one op), an upper bound."""
        ws = self.weft_size(n)
        hs = self.w("sync_incremental", "params.curve_handshake_bytes")
        if ws and get(ws, "insync.wire_bytes_median") is not None:
            b = get(ws, "insync.wire_bytes_median")
            return (self.tb(get(ws, "insync.live_ms_median"), b)
                    + (f" (CURVE handshake {nbytes(hs)}, weft {nbytes(b - hs)})" if hs else ""))
        if n == self.w("reconnect", "params.ops", 0) // 10 + 1 and self.w("reconnect", "session.ms_median") is not None:
            return (self.tb(self.w("reconnect", "session.ms_median"), self.w("reconnect", "session.wire_bytes_median"))
                    + f" (CURVE handshake {nbytes(self.w('reconnect', 'params.curve_handshake_bytes'))},"
                      f" weft {nbytes(self.w('reconnect', 'weft_bytes_median'))})")
        ws = self.weft_size(n)
        if ws:
            return "≤ " + self.tb(get(ws, "fresh.ms_median"), get(ws, "fresh.wire_bytes_median")) + " (with 1 op)"
        return NM

    def weft_reconnect_bytes_big(self):
        ws = self.weft_size(self.big)
        if ws and get(ws, "insync.wire_bytes_median") is not None:
            return get(ws, "insync.wire_bytes_median"), f"a new session in sync at {self.big:,} notes"
        rb = self.w("reconnect", "session.wire_bytes_median")
        if rb is not None and self.w("reconnect", "params.ops", 0) // 10 + 1 == self.big:
            return rb, f"the reconnect workload at {self.big:,} notes"
        ws = self.weft_size(self.big)
        if ws and get(ws, "fresh.wire_bytes_median") is not None:
            return (get(ws, "fresh.wire_bytes_median"),
                    f"a new session with one new op at {self.big:,} notes: an upper bound")
        b = self.w("reconnect", "session.wire_bytes_median")
        if b is not None:
            return b, f"the reconnect workload ({self.w('reconnect', 'params.ops', 0):,} ops; no {self.big:,}-note figure)"
        return None, ""

    def targets(self):
        self.out("## The issue's targets (weft, same machine, same run)")
        self.out()
        self.out("| target | weft | reference | ratio | |")
        self.out("|---|---|---|---|---|")
        # 1. durable writes faster than Yjs's in-memory writes
        wb = self.w("notes", "build.ops_per_s")
        yb = self.p("yjs", "write", "batched.ops_per_s")
        r = ratio(wb, yb)
        self.out(f"| durable writes faster than Yjs's in-memory writes (notes build, same transactions) | {rate(wb)}"
                 f" | Yjs {rate(yb)} | {self.fr(r)} | {met(None if r is None else r > 1)} |")
        w1 = self.w("write1", "weft_us.median")
        yp = self.p("yjs", "write", "per_op.ops_per_s")
        r1 = ratio(1e6 / w1 if w1 else None, yp)
        self.out(f"| (for reference: one transaction per op, weft durable = one fsync each) | {rate(1e6 / w1) if w1 else NM}"
                 f" | Yjs {rate(yp)} | {self.fr(r1)} | - |")
        # 2. initial sync 10x faster than automerge-repo
        wi = self.w("sync_initial", "weft.converge_ms")
        ai = self.p("automerge-repo", "initial_sync", "converge_ms")
        r = ratio(ai, wi)
        self.out(f"| initial sync of {self.n:,} notes ≥ 10x faster than automerge-repo | {ms(wi)} | automerge-repo {ms(ai)}"
                 f" | {self.fr(r)} | {met(None if r is None else r >= 10)} |")
        # 3. reconnect under 1 KB at 100,000 notes
        b, how = self.weft_reconnect_bytes_big()
        yr = self.p("yjs", "reconnect", f"sizes.{self.big}.bytes_median")
        ar = self.p("automerge", "reconnect", f"sizes.{self.big}.fresh_states.bytes_median")
        rr = self.p("automerge-repo", "reconnect", f"sizes.{self.big}.bytes_median")
        self.out(f"| reconnect when in sync < 1 KB at {self.big:,} notes | {nbytes(b)} ({how}) | Yjs {nbytes(yr)},"
                 f" Automerge {nbytes(ar)}, automerge-repo {nbytes(rr)} | - | {met(None if b is None else b < 1000)} |")
        # 4. small change under 5 ms and 1 KB at every size
        cells, ok, seen = [], True, 0
        for n in self.sizes:
            ws = self.weft_size(n)
            if not ws:
                cells.append(f"{n:,}: n/m")
                continue
            seen += 1
            ft, fb = get(ws, "fresh.ms_median"), get(ws, "fresh.wire_bytes_median")
            pt, pb = get(ws, "push.ms_median"), get(ws, "push.wire_bytes_median")
            good = None not in (ft, fb, pt, pb) and ft < 5 and pt < 5 and fb < 1000 and pb < 1000
            ok = ok and good
            cells.append(f"{n:,}: live {ms(pt)} {nbytes(pb)}, new session {ms(ft)} {nbytes(fb)}")
        flag = None if seen == 0 else (ok if seen == len(self.sizes) else (False if not ok else None))
        self.out(f"| one small change < 5 ms and < 1 KB at every size (live and new session) | {'; '.join(cells)}"
                 f" | - | - | {met(flag)} |")
        # 5. merge 10x faster than Automerge
        wm = self.weft_merge()
        am = self.p("automerge", "merge", "merge_ms")
        which = {"per_edit": "one change per edit", "one_change_per_side": "one change per side"}.get(
            self.p("automerge", "merge", "merge_variant"), "")
        failed = am is None and self.p("automerge", "merge", "variants.per_edit.error")
        r = ratio(am, wm)
        if failed:
            ref = f"Automerge did not complete: {failed}"
            flag = None if wm is None else True
        else:
            ref = f"Automerge {ms(am)}{f' ({which})' if which else ''}"
            flag = None if r is None else r >= 10
        self.out(f"| merge of two diverged {self.n:,}-note replicas ≥ 10x faster than Automerge | {ms(wm)}"
                 f" | {ref} | {self.fr(r)} | {met(flag)} |")
        self.out()
        self.out("Ratios are the reference's time over weft's (for writes: weft's rate over the reference's);"
                 " above 1 means weft is faster. Bytes: 1 KB = 1,000 bytes, as in `docs/performance.md`.")
        self.out()

    @staticmethod
    def fr(r):
        return "n/m" if r is None else f"{r:.2f}x" if r < 100 else f"{r:.0f}x"

    def guarantees(self):
        ops = self.w("notes", "disk.ops_in_log")
        self.out("## What each system guarantees in these runs")
        self.out()
        self.out("The figures above are not like for like; this is what each number pays for.")
        self.out()
        self.out("| | weft | Automerge | automerge-repo | Yjs |")
        self.out("|---|---|---|---|---|")
        self.out("| durability of a write | **durable**: `weft_txn_commit` returns after LMDB's commit reached the disk"
                 " (fdatasync + synchronous meta-page write; default flags) | **in memory**: a change lives in the process;"
                 " persisting is the app's job (`save()` / `saveIncremental()` then a file write, not timed here)"
                 " | **in memory** here (no storage adapter); with one, saves are debounced (100 ms) and asynchronous,"
                 " not acknowledged per change | **in memory**: persistence is a provider's job (e.g. y-indexeddb), outside"
                 " the transaction |")
        self.out("| history | every op kept in the op log" + (f" ({ops:,} ops at {self.n:,} notes)" if ops else "")
                 + "; per-field state with conflicts | every change kept (hash-linked DAG of changes); any past"
                 " version can be viewed | as Automerge | no history: overwritten map values are garbage-collected"
                 " (`gc: true`, the default), only their ids remain (tombstones) for merging |")
        self.out("| conflict model | per-field registers (concurrent values kept, last writer wins as the view),"
                 " add-wins sets | per-key multi-value registers (conflicts visible), maps as sets"
                 " | as Automerge | per-key last writer wins (by client id); no conflict visible |")
        self.out("| what the sync figures include | two processes, TCP on 127.0.0.1, ZMTP + **CURVE** (encryption,"
                 " mutual authentication of devices by their keys); received ops are committed durably before they"
                 " are acknowledged | the sync protocol's messages only: one process, no transport, no encryption,"
                 " nothing written | two processes, WebSocket on 127.0.0.1 (HTTP upgrade + framing counted),"
                 " **no TLS, no authentication** (peer ids are self-declared), nothing written"
                 " | the state-vector exchange only: one process, no transport, no encryption, nothing written |")
        self.out("| reconnect state | each side keeps what the other acknowledged (persisted lazily), so a session"
                 " in sync sends a 12-byte digest of its vector each way (protocol 2) | sync states can be persisted (`encodeSyncState`);"
                 " shown both without (fresh) and with (kept) | sync states kept only with storage and"
                 " a non-ephemeral peer; not here | nothing kept: every session exchanges state vectors and"
                 " the full delete set |")
        self.out()

    def method(self):
        self.out("## How it was measured")
        self.out()
        self.out("- Same data everywhere: notes `n00000`…, title ~20 chars, body ~200 chars, `updatedAt` int ms,"
                 " 1–3 tags (a set: weft `weft_add`, Automerge and Yjs a map tag → true), then 5 single-field edits"
                 " per note, the k-th edit of note i on field (i + k) mod 3 of (title, body, updatedAt); the text"
                 " pools are generated by the same xorshift64* and word list as `bench.c` (checked bit for bit)."
                 " Automerge stores title and body as `ImmutableString` (a scalar register, like weft's; a plain"
                 " string would be collaborative text, larger and slower), Yjs as plain values in a `Y.Map`.")
        self.out("- weft: `weft-bench --json write1 batch notes sync_initial sync_incremental [merge]`"
                 " (see `docs/performance.md` for each workload). Its sync figures are medians of 15 sessions;"
                 " bytes are TCP payload both ways (`TCP_INFO`), including the 869-byte CURVE handshake of every"
                 " new session.")
        self.out("- Automerge (`peers/automerge.mjs`) and Yjs (`peers/yjs.mjs`): the build and the sync protocol"
                 " in one Node process; `load` in a fresh `node` process per run (7 runs, median), timed from"
                 " before reading the file to the end of the read, like weft's fresh-process open. Automerge's sync:"
                 " `generateSyncMessage` / `receiveSyncMessage` until both are quiet. Yjs's: state vectors both"
                 " ways, `encodeStateAsUpdate(doc, vector)` both ways (y-protocols' steps 1 and 2); a live change is"
                 " the `update` event's bytes, as y-websocket broadcasts them.")
        self.out("- Merge: from the same saved base, side A edits notes 0 to n/2 - 1 and side B notes n/4 to 3n/4 - 1"
                 " (the sixth edit of the plan's sequence, B's values differing), one transaction (change) per edit,"
                 " or one per side; both then take the other's edits. Automerge: `merge()` each way, each in a fresh process after"
                 " a one-change warm-up (time: the sum). Yjs: state vectors and differences both ways, in process.")
        self.out("- automerge-repo (`peers/automerge_repo.mjs`): a `Repo` with `WebSocketServerAdapter` in the bench"
                 " process (A, answering only for documents asked for, as a sync server), and a child `node` process"
                 " (B) with `WebSocketClientAdapter`, neither with storage. Initial sync: B finds the document until"
                 " its heads equal A's. Reconnect and new sessions: B starts holding A's document (`repo.import`"
                 " with the same document id). Bytes: B's socket `bytesRead + bytesWritten`.")
        self.out("- The 100,000-note documents are built with the same plan (~1,000,000 ops); Automerge builds them"
                 " once per run (`WEFT_PEERS_CACHE`) and automerge-repo loads that build.")
        self.out()


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: compare_table.py RESULTS.jsonl... > PAGE.md\n")
        return 2
    try:
        res, heads, meta = load(argv[1:])
    except OSError as e:
        sys.stderr.write(f"compare_table.py: {e}\n")
        return 1
    sys.stdout.write(Page(res, heads, meta).render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
