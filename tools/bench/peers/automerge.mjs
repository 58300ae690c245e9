// tools/bench/peers/automerge.mjs - weft-bench's notes workloads on Automerge,
// in memory, with Automerge's sync protocol (generateSyncMessage /
// receiveSyncMessage between two documents in one process): the figures are
// the protocol's bytes, messages and CPU time, with no transport. The same
// protocol over a real WebSocket is automerge_repo.mjs.
//
//   write         the notes build (99,999 logical ops at 10,000 notes):
//                 batched (weft's transaction shapes, one Automerge.change per
//                 transaction) and one change per op; Automerge.save's size.
//   load          in a fresh process (this script, --child-load): read the
//                 saved file, Automerge.load, read all notes (every field) or
//                 one note; time and memory.
//   initial_sync  a fresh replica syncs every note from a full one.
//   small_change  at 1,000 / 10,000 / 100,000 notes, after a full sync: one
//                 title set, then a sync (a) with the session's sync states
//                 (a live connection), (b) with sync states restored from
//                 encodeSyncState (a reconnect that persisted them, as
//                 automerge-repo does with storage) and (c) with fresh ones.
//   reconnect     at the same sizes: replicas already in sync, fresh and
//                 restored sync states.
//   merge         two replicas of the same 10,000-note base each make 5,000
//                 edits (one change each; 2,500 notes edited on both sides,
//                 same field); Automerge.merge both ways (headline) and, when
//                 it fits in one wasm heap (<= 1,000 edits a side), the sync
//                 protocol with fresh states.
//
// Processes: each group of workloads runs in a process of its own, and so do
// merge's edits and each direction of its merge (--child-edits,
// --child-merge), because Automerge's wasm heap (at most 4 GB) grows by
// ~0.65-0.8 MB per change made on or applied to a 10,000-note document and is
// never given back. Built documents pass between processes through
// WEFT_PEERS_CACHE.
//
// Document shape: {notes: {n00000: {title, body, updatedAt, tags: {tag: true}}}}
// with title and body as ImmutableString (a scalar, last writer wins, as
// weft's register; a plain string would be collaborative text), updatedAt an
// int. Ops counted as weft counts them.
//
// Invariants: stdout carries JSON lines only; every workload checks that the
// replicas it syncs or merges end with the same heads. Thread-safety:
// single-threaded.

import * as A from "@automerge/automerge";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  childLoadRun, countOps, emit, fmtBytes, gc, header, loadWorkload, mem, median, mergeEdits, msSince,
  notesPlan, nowNs, parseArgs, pools, progress, round, runChild, runWorkloads, smallOp,
} from "./common.mjs";

const SYSTEM = "automerge";
const SELF = fileURLToPath(import.meta.url);
const WORKLOADS = ["write", "load", "initial_sync", "small_change", "reconnect", "merge"];
const USAGE = `usage: node automerge.mjs [--quick] [--sizes 1000,10000,100000] [--reps N] [--budget S] [WORKLOAD...]
  workloads: ${WORKLOADS.join(" ")} (default: all)
`;

// ---- the document ----

/** One logical op on the proxy of the notes map (d.notes, fetched once per change). */
export function applyOp(notes, op) {
  const v = op.field === "updatedAt" ? op.value : new A.ImmutableString(op.value);
  if (op.create) {
    notes[op.id] = { [op.field]: v };
    return;
  }
  const m = notes[op.id];
  if (op.kind === "tag") {
    if (!m.tags) m.tags = { [op.value]: true };
    else m.tags[op.value] = true;
  } else {
    m[op.field] = v;
  }
}

/**
 * Runs the plan: one change per transaction ("batched") or per op
 * ("per_op"). With @p budgetMs, stops after the transaction or op that
 * passes it. Returns {doc, opsDone}.
 */
export function build(txns, mode, budgetMs = Infinity) {
  let doc = A.change(A.init(), (d) => { d.notes = {}; });
  let opsDone = 0;
  const t0 = nowNs();
  for (const t of txns) {
    if (mode === "batched") {
      doc = A.change(doc, (d) => {
        const notes = d.notes;
        for (const op of t) applyOp(notes, op);
      });
      opsDone += t.length;
    } else {
      for (const op of t) {
        doc = A.change(doc, (d) => applyOp(d.notes, op));
        opsDone++;
        if (opsDone % 100 === 0 && msSince(t0) > budgetMs) return { doc, opsDone };
      }
    }
    if (msSince(t0) > budgetMs) break;
  }
  return { doc, opsDone };
}

const built = new Map(); // n -> {saved, ops, build_ms}: one build per size per run
const PLAN_VERSION = 1; // bump when notesPlan or applyOp changes what is built

/**
 * The n-note document, built once per process with the notes plan (batched)
 * and then handed out as fresh loads of its saved bytes: a build of 100,000
 * notes takes minutes in Automerge, a load seconds. build_ms is the build's.
 * With WEFT_PEERS_CACHE=DIR the saved bytes are also kept in DIR, so that
 * automerge_repo.mjs, run next by compare.sh, loads what this script built.
 */
export function buildDoc(n, p) {
  let c = built.get(n);
  const cdir = process.env.WEFT_PEERS_CACHE;
  const cfile = cdir ? join(cdir, `automerge-notes-v${PLAN_VERSION}-${n}`) : null;
  if (!c && cfile && existsSync(cfile + ".bin") && existsSync(cfile + ".json")) {
    c = { ...JSON.parse(readFileSync(cfile + ".json", "utf8")), saved: readFileSync(cfile + ".bin") };
    built.set(n, c);
  }
  if (c) return { doc: A.load(c.saved), ops: c.ops, build_ms: c.build_ms };
  const txns = notesPlan(n, p);
  const t0 = nowNs();
  const { doc } = build(txns, "batched");
  const build_ms = msSince(t0);
  c = { saved: A.save(doc), ops: countOps(txns), build_ms };
  built.set(n, c);
  if (cfile) {
    writeFileSync(cfile + ".bin", c.saved);
    writeFileSync(cfile + ".json", JSON.stringify({ ops: c.ops, build_ms }));
  }
  return { doc, ops: c.ops, build_ms };
}

/** The saved bytes of buildDoc(n, p) (building it if needed). */
export function savedDoc(n, p) {
  if (!built.has(n)) A.free(buildDoc(n, p).doc);
  return built.get(n);
}

function str(v) {
  return typeof v === "string" ? v : v.val;
}

function readAll(doc) {
  let ents = 0, fields = 0, acc = 0;
  for (const id in doc.notes) {
    const m = doc.notes[id];
    ents++;
    for (const k in m) {
      fields++;
      if (k === "tags") for (const tag in m.tags) acc += tag.length;
      else if (k === "updatedAt") acc += m[k] > 0 ? 1 : 0;
      else acc += str(m[k]).length;
    }
  }
  return [ents, fields, acc];
}

function readOne(doc, id) {
  const m = doc.notes[id];
  let fields = 0;
  for (const k in m) {
    fields++;
    if (k === "tags") for (const tag in m.tags) void tag;
    else void (k === "updatedAt" ? m[k] : str(m[k]));
  }
  return fields;
}

/** The sync protocol between a and b until neither has anything to send. */
export function syncLoop(a, b, sa, sb) {
  let bytes = 0, messages = 0, rounds = 0;
  for (;;) {
    let m1, m2;
    [sa, m1] = A.generateSyncMessage(a, sa);
    if (m1) {
      bytes += m1.length;
      messages++;
      [b, sb] = A.receiveSyncMessage(b, sb, m1);
    }
    [sb, m2] = A.generateSyncMessage(b, sb);
    if (m2) {
      bytes += m2.length;
      messages++;
      [a, sa] = A.receiveSyncMessage(a, sa, m2);
    }
    if (!m1 && !m2) break;
    rounds++;
    if (rounds > 1000) throw new Error("sync did not converge in 1,000 rounds");
  }
  return { a, b, sa, sb, bytes, messages, rounds };
}

function sameHeads(a, b, what) {
  const ha = A.getHeads(a).sort().join(), hb = A.getHeads(b).sort().join();
  if (ha !== hb) throw new Error(`${what}: heads differ`);
}

function restore(s) {
  return A.decodeSyncState(A.encodeSyncState(s));
}

// ---- workloads ----

function wlWrite(cfg, p) {
  const n = cfg.notes;
  const txns = notesPlan(n, p);
  const ops = countOps(txns);
  const out = { bench: "write", system: SYSTEM, params: { notes: n, ops, txns: txns.length,
    durability: "in memory (no persistence)", strings: "ImmutableString (scalar)" } };
  for (const mode of ["batched", "per_op"]) {
    progress(SYSTEM, `write: ${mode}`);
    gc();
    const budget = mode === "per_op" ? cfg.budgetMs : Infinity;
    const t0 = nowNs();
    const { doc, opsDone } = build(txns, mode, budget);
    const ms = msSince(t0);
    out[mode] = { ms: round(ms, 1), ops_done: opsDone, ops_per_s: Math.round(opsDone / (ms / 1e3)),
                  changes: A.stats(doc).numChanges };
    if (opsDone < ops) {
      // One change per op slows down as the document grows (each change
      // rebuilds the JS view of the changed map): the rate is over the
      // first ops_done ops, an upper bound for the whole build.
      out[mode].partial = true;
      out[mode].budget_ms = budget;
    } else {
      const t1 = nowNs();
      const saved = A.save(doc);
      out[mode].save_ms = round(msSince(t1), 1);
      out[mode].saved_bytes = saved.length;
      if (mode === "batched") {
        out.storage = { saved_bytes: saved.length, bytes_per_note: Math.round(saved.length / n),
                        automerge_ops: A.stats(doc).numOps };
        gc();
        out.memory_after_build = mem();
      }
    }
    A.free(doc);
  }
  const pp = out.per_op.partial ? ` (first ${out.per_op.ops_done} ops: stopped after ${cfg.budgetMs / 1e3} s)` : "";
  emit(out, `write: ${n} notes, ${ops} ops: batched ${out.batched.ops_per_s} ops/s, one change per op ` +
    `${out.per_op.ops_per_s} ops/s${pp} | saved ${fmtBytes(out.storage.saved_bytes)} | in memory`);
}

/** --child-edits SIDE N BASE OUT: one side's merge edits, saved to OUT. */
/** --child-edits SIDE N E PER BASE OUT: one side's E merge edits, PER to a change, saved to OUT. */
function childEdits(side, n, edits, per, base, out) {
  const p = pools(3);
  let d = A.load(readFileSync(base));
  const e = mergeEdits(n, side, p, edits);
  const t0 = nowNs();
  for (let i = 0; i < e.length; i += per) {
    const chunk = e.slice(i, i + per);
    d = A.change(d, (x) => { for (const op of chunk) applyOp(x.notes, op); });
  }
  const edit_ms = msSince(t0);
  const external = process.memoryUsage().external;
  writeFileSync(out, A.save(d));
  process.stdout.write(JSON.stringify({ edit_ms, external }) + "\n");
}

/** runChild, but a failed child gives {error} (its wasm out-of-memory trap, or its last line). */
function tryChild(args) {
  try {
    return runChild(SELF, args);
  } catch (e) {
    const msg = String(e.message);
    if (msg.includes("rust_oom")) return { error: "wasm out of memory (Rust alloc error in a 4 GB wasm32 heap)" };
    return { error: msg.split("\n").filter((l) => l.trim()).slice(-3).join(" / ").slice(0, 300) };
  }
}

function wlLoad(cfg, p) {
  const { doc } = buildDoc(cfg.notes, p);
  const bytes = A.save(doc);
  A.free(doc);
  loadWorkload(cfg, { system: SYSTEM, self: SELF, ext: "automerge", bytes, load: (b) => A.load(b), readAll,
                      free: (d) => A.free(d), method: "Automerge.load", loadWord: "load",
                      memText: (m) => `wasm+heap: rss ${fmtBytes(m.rss)}` });
}

function wlInitialSync(cfg, p) {
  const n = cfg.notes, reps = 3;
  let { doc: a } = buildDoc(n, p);
  const rs = [];
  for (let r = 0; r < reps; r++) {
    gc();
    const t0 = nowNs();
    const s = syncLoop(a, A.init(), A.initSyncState(), A.initSyncState());
    const ms = msSince(t0);
    a = s.a; // receiveSyncMessage returns a new document even when nothing changed
    sameHeads(s.a, s.b, "initial_sync");
    if (Object.keys(s.b.notes).length !== n) throw new Error("initial_sync: notes missing");
    rs.push({ ms, bytes: s.bytes, messages: s.messages, rounds: s.rounds });
    A.free(s.b);
  }
  const ms = median(rs.map((r) => r.ms));
  emit({ bench: "initial_sync", system: SYSTEM,
         params: { notes: n, reps, protocol: "Automerge sync protocol, fresh sync states; in process, no transport" },
         converge_ms: round(ms, 2), converge_ms_min: round(Math.min(...rs.map((r) => r.ms)), 2),
         bytes: rs[0].bytes, messages: rs[0].messages, round_trips: rs[0].rounds },
       `initial_sync: ${n} notes in ${round(ms, 1)} ms, ${fmtBytes(rs[0].bytes)} in ${rs[0].messages} messages ` +
       `(${rs[0].rounds} round trips; in process, no transport)`);
}

function measureSync(a, b, sa, sb) {
  const t0 = nowNs();
  const s = syncLoop(a, b, sa, sb);
  return { ...s, ms: msSince(t0) };
}

/** small_change and reconnect at each size, from one build per size. */
function syncSizes(cfg, p, want) {
  const small = {}, rec = {};
  for (const n of cfg.sizes) {
    progress(SYSTEM, `sync at ${n} notes: building`);
    gc();
    const t00 = nowNs();
    let { doc: a, ops, build_ms } = buildDoc(n, p);
    // The full sync: B loads A's saved document, then one session from fresh
    // states establishes the session's sync states (that session is the
    // first reconnect sample).
    const t0 = nowNs();
    let b = A.load(A.save(a));
    const load_ms = msSince(t0);
    const reps = n >= 100000 ? Math.min(cfg.reps, 5) : cfg.reps;
    let s = measureSync(a, b, A.initSyncState(), A.initSyncState());
    a = s.a; b = s.b;
    let sa = s.sa, sb = s.sb;
    sameHeads(a, b, "full sync");
    const recFresh = [], recRestored = [];
    for (let r = 0; r < reps; r++) {
      s = measureSync(a, b, A.initSyncState(), A.initSyncState());
      a = s.a; b = s.b; sa = s.sa; sb = s.sb;
      recFresh.push(s);
      s = measureSync(a, b, restore(sa), restore(sb));
      a = s.a; b = s.b; sa = s.sa; sb = s.sb;
      recRestored.push(s);
    }
    sameHeads(a, b, "reconnect");
    const summ = (v) => ({ ms_median: round(median(v.map((x) => x.ms)), 3), bytes_median: median(v.map((x) => x.bytes)),
                           messages: v[0].messages, round_trips: v[0].rounds });
    rec[n] = { ops, build_ms: round(build_ms, 0), reps, fresh_states: summ(recFresh), restored_states: summ(recRestored) };
    if (want.includes("small_change")) {
      let seq = 0;
      const res = {};
      for (const mode of ["live", "restored_states", "fresh_states"]) {
        const v = [];
        for (let r = 0; r < reps; r++) {
          const op = smallOp(seq++, p, n);
          a = A.change(a, (d) => applyOp(d.notes, op));
          const t1 = nowNs(); // from A's change returning, as weft's push
          const st = mode === "live" ? [sa, sb] : mode === "restored_states" ? [restore(sa), restore(sb)]
            : [A.initSyncState(), A.initSyncState()];
          s = syncLoop(a, b, st[0], st[1]);
          const ms = msSince(t1);
          a = s.a; b = s.b; sa = s.sa; sb = s.sb;
          if (str(b.notes[op.id].title) !== op.value) throw new Error(`small_change ${mode}: not applied`);
          v.push({ ms, bytes: s.bytes, messages: s.messages, rounds: s.rounds });
        }
        res[mode] = summ(v);
      }
      sameHeads(a, b, "small_change");
      small[n] = { ops, build_ms: round(build_ms, 0), load_copy_ms: round(load_ms, 0), reps, ...res };
    }
    A.free(a);
    A.free(b);
    progress(SYSTEM, `sync at ${n} notes: ${round(msSince(t00) / 1e3, 1)} s`);
  }
  if (want.includes("small_change")) {
    emit({ bench: "small_change", system: SYSTEM,
           params: { op: "one title set (~20 chars) in its own change",
                     live: "sync with the session's sync states", restored_states: "states restored from encodeSyncState (reconnect, persisted)",
                     fresh_states: "initSyncState on both sides (reconnect, nothing persisted)", transport: "none (in process)" },
           sizes: small },
         "small_change: " + Object.entries(small).map(([n, s]) =>
           `${n} notes: live ${s.live.ms_median} ms ${s.live.bytes_median} B, restored ${s.restored_states.ms_median} ms ` +
           `${fmtBytes(s.restored_states.bytes_median)}, fresh ${s.fresh_states.ms_median} ms ${fmtBytes(s.fresh_states.bytes_median)}`).join(" | "));
  }
  if (want.includes("reconnect")) {
    emit({ bench: "reconnect", system: SYSTEM,
           params: { protocol: "in sync: Automerge sync protocol until quiet", transport: "none (in process)" },
           sizes: rec },
         "reconnect: " + Object.entries(rec).map(([n, s]) =>
           `${n} notes: fresh states ${s.fresh_states.ms_median} ms ${fmtBytes(s.fresh_states.bytes_median)}, ` +
           `restored ${s.restored_states.ms_median} ms ${fmtBytes(s.restored_states.bytes_median)}`).join(" | "));
  }
}

function wlMerge(cfg, p) {
  const n = cfg.notes, reps = 3;
  const { doc: base } = buildDoc(n, p);
  const saved = A.save(base);
  A.free(base);
  const ea = mergeEdits(n, "a", p), eb = mergeEdits(n, "b", p);
  // Two ways to make each side's edits: one change per edit (a user's
  // edits, each committed) and one change for all of a side's edits (weft's
  // large transactions). Each side's edits run in a process of their own
  // (--child-edits), and so does each direction of the merge
  // (--child-merge): Automerge's wasm heap (at most 4 GB, never given back)
  // grows by ~0.65-0.8 MB per change made on or applied to a 10,000-note
  // document. A variant whose child runs out of memory is reported so.
  const variants = {};
  const dir = mkdtempSync("/var/tmp/weft-peers-merge-");
  try {
    writeFileSync(join(dir, "base.bin"), saved);
    const plan = [["per_edit", 1, ea.length], ["one_change_per_side", ea.length, ea.length]];
    for (let vi = 0; vi < plan.length; vi++) {
      const [vname, per, edits] = plan[vi];
      const v = { edits_per_side: edits, overlap_notes: edits / 2, edits_per_change: per, sides: [] };
      variants[vname] = v;
      for (const name of ["a", "b"]) {
        progress(SYSTEM, `merge ${vname}: side ${name}'s ${edits} edits (a child process)`);
        const r = tryChild(["--child-edits", name, String(n), String(edits), String(per), join(dir, "base.bin"),
                            join(dir, `${name}.bin`)]);
        if (r.error) { v.error = `side ${name}'s edits: ${r.error}`; break; }
        v.sides.push({ edit_ms: round(r.edit_ms, 0), saved_bytes: statSync(join(dir, `${name}.bin`)).size,
                       process_external_bytes_after_edits: r.external });
      }
      const rm = [];
      for (let r = 0; r < reps && !v.error; r++) {
        progress(SYSTEM, `merge ${vname}: rep ${r + 1}: merge() a <- b and b <- a (two child processes)`);
        const ab = tryChild(["--child-merge", join(dir, "a.bin"), join(dir, "b.bin")]);
        if (ab.error) { v.error = `merge() a <- b: ${ab.error}`; break; }
        const ba = tryChild(["--child-merge", join(dir, "b.bin"), join(dir, "a.bin")]);
        if (ba.error) {
          v.error = `merge() b <- a: ${ba.error}`;
          v.merge_a_from_b_ms_before_the_failure = round(ab.merge_ms, 1);
          break;
        }
        if (ab.heads !== ba.heads || ab.digest !== ba.digest) throw new Error("merge: the two directions differ");
        rm.push({ ms: ab.merge_ms + ba.merge_ms, ab: ab.merge_ms, ba: ba.merge_ms, external: Math.max(ab.external, ba.external) });
      }
      if (rm.length) {
        v.merge_ms = round(median(rm.map((x) => x.ms)), 2);
        v.merge_ms_min = round(Math.min(...rm.map((x) => x.ms)), 2);
        v.merge_a_from_b_ms = round(median(rm.map((x) => x.ab)), 2);
        v.merge_b_from_a_ms = round(median(rm.map((x) => x.ba)), 2);
        v.process_external_bytes_after_merge = rm[0].external;
        v.reps = rm.length;
      }
      // The sync protocol (fresh states) applies both sides' changes in one
      // heap: run it where that fits.
      if (!v.error && (per > 1 || edits <= 1000)) {
        progress(SYSTEM, `merge ${vname}: sync protocol (a child process)`);
        const x = tryChild(["--child-merge", join(dir, "a.bin"), join(dir, "b.bin"), "sync"]);
        v.sync = x.error ? { error: x.error } : { ms: round(x.merge_ms, 2), bytes: x.bytes, messages: x.messages, round_trips: x.rounds };
      } else if (!v.error) {
        v.sync = { skipped: `not run: ${2 * edits} single-edit changes applied in one wasm heap exceed its 4 GB` };
      }
      // When the full merge does not fit, the same at a tenth of the edits.
      if (vname === "per_edit" && v.merge_ms === undefined && ea.length >= 1000) {
        plan.push(["per_edit_tenth", 1, ea.length / 10]);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const head = ["per_edit", "one_change_per_side"].find((k) => variants[k].merge_ms !== undefined) || "per_edit";
  const h = variants[head];
  const desc = (k) => {
    const v = variants[k];
    if (v.merge_ms === undefined) return `${k}: ${v.error}`;
    const sy = v.sync ? (v.sync.ms !== undefined ? `, sync protocol ${round(v.sync.ms, 1)} ms ${fmtBytes(v.sync.bytes)}`
      : `, sync protocol ${v.sync.error || v.sync.skipped}`) : "";
    return `${k} (${v.edits_per_side} edits a side): merge() both ways ${round(v.merge_ms, 1)} ms${sy}`;
  };
  emit({ bench: "merge", system: SYSTEM,
         params: { notes: n, edits_per_side: ea.length, overlap_notes: n / 4, reps,
                   method: "from one saved base, each side's edits in a child process; Automerge.merge a <- b and b <- a, each timed in a fresh process after a one-change warm-up, on loads of the two sides' saves; merge_ms is their sum" },
         merge_variant: head, merge_ms: h.merge_ms ?? null, variants },
       `merge: 2 x ${ea.length} edits on ${n} notes | ` + Object.keys(variants).map(desc).join(" | "));
}

/**
 * --child-merge INTO FROM [sync]: loads both saves and, after a warm-up,
 * merges FROM into INTO (or runs the sync protocol between them).
 */
function childMerge(into, from, how) {
  const a = A.load(readFileSync(into)), b = A.load(readFileSync(from));
  // Warm-up (JIT, wasm tiers): a merge of one change on copies.
  const wa = A.clone(a);
  const wb = A.change(A.clone(b), (x) => { x.warm = 1; });
  A.free(A.merge(wa, wb));
  A.free(wb);
  const t0 = nowNs();
  let d, extra = {};
  if (how === "sync") {
    const s = syncLoop(a, b, A.initSyncState(), A.initSyncState());
    d = s.a;
    extra = { bytes: s.bytes, messages: s.messages, rounds: s.rounds };
    sameHeads(s.a, s.b, "merge (sync)");
  } else {
    d = A.merge(a, b);
  }
  const merge_ms = msSince(t0);
  const json = JSON.stringify(d.notes);
  process.stdout.write(JSON.stringify({ merge_ms, heads: A.getHeads(d).sort().join(","),
    digest: createHash("sha256").update(json).digest("hex"), external: process.memoryUsage().external, ...extra }) + "\n");
}

// ---- main ----

/**
 * Runs each group of workloads (write, load, initial_sync, small_change +
 * reconnect, merge) in a process of its own: Automerge's wasm heap never
 * shrinks, and after the 100,000-note documents a later workload in the same
 * process can exhaust wasm32's 4 GB ("Module terminated"). The groups share
 * the built documents through WEFT_PEERS_CACHE (a temporary one if unset).
 */
function runGroups(argv, cfg) {
  const groups = [];
  for (const w of cfg.workloads) {
    if (w === "reconnect" && cfg.workloads.includes("small_change")) continue;
    groups.push(w === "small_change" && cfg.workloads.includes("reconnect") ? ["small_change", "reconnect"] : [w]);
  }
  const flags = argv.filter((a, i) => !WORKLOADS.includes(a) || (i > 0 && argv[i - 1] === "--sizes"));
  let tmp = null;
  if (!process.env.WEFT_PEERS_CACHE) {
    tmp = mkdtempSync("/var/tmp/weft-peers-cache-");
    process.env.WEFT_PEERS_CACHE = tmp;
  }
  let rc = 0;
  try {
    for (const g of groups) {
      const r = spawnSync(process.execPath, ["--expose-gc", SELF, "--group", ...flags, ...g],
                          { stdio: "inherit", env: process.env });
      if (r.status !== 0) {
        process.stderr.write(`peers/automerge: ${g.join(" ")} failed (exit ${r.status ?? r.signal})\n`);
        rc = 1;
      }
    }
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
  return rc;
}

const argv = process.argv.slice(2);
if (process.argv[1] && SELF === resolve(process.argv[1])) {
  if (argv[0] === "--child-load") {
    childLoadRun(argv[1], argv[2], argv[3], (b) => A.load(b), readAll, readOne);
  } else if (argv[0] === "--child-merge") {
    childMerge(argv[1], argv[2], argv[3]);
  } else if (argv[0] === "--child-edits") {
    childEdits(argv[1], Number(argv[2]), Number(argv[3]), Number(argv[4]), argv[5], argv[6]);
  } else if (argv[0] !== "--group") {
    const cfg = parseArgs(argv, WORKLOADS, USAGE);
    header(SYSTEM, ["@automerge/automerge"]);
    process.exitCode = runGroups(argv, cfg);
  } else {
    const cfg = parseArgs(argv.slice(1), WORKLOADS, USAGE);
    runWorkloads(cfg, pools(3), { write: wlWrite, load: wlLoad, initial_sync: wlInitialSync, merge: wlMerge,
                                  sizes: syncSizes });
  }
}
