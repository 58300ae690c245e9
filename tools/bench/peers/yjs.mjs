// tools/bench/peers/yjs.mjs - weft-bench's notes workloads on Yjs, in memory,
// with Yjs's state-vector sync (the exchange y-protocols' sync step 1 / step 2
// does: each side sends its state vector, each answers with
// encodeStateAsUpdate(doc, peerVector)), run in one process: the figures are
// the protocol's bytes and CPU time, with no transport.
//
//   write         the notes build (99,999 logical ops at 10,000 notes) three
//                 ways: batched (weft's transaction shapes: 2,000-note
//                 creation transactions, 10,000-op edit transactions), one
//                 transaction per op, and one transaction per op with an
//                 'update' listener keeping each update (what a persistence
//                 provider such as y-indexeddb receives); the encoded
//                 document's size (encodeStateAsUpdate, V1 and V2).
//   load          in a fresh process (this script, --child-load): read the
//                 encoded file, applyUpdate into a new Y.Doc, read all notes
//                 (every field) or one note; time and memory.
//   initial_sync  a fresh replica syncs every note from a full one.
//   small_change  at 1,000 / 10,000 / 100,000 notes, after a full sync: one
//                 title set, (a) pushed as the update event's bytes to the
//                 live peer (y-websocket's broadcast), (b) after reconnecting
//                 (state-vector exchange both ways).
//   reconnect     at the same sizes: two replicas already in sync exchange
//                 state vectors and answers.
//   merge         two replicas of the same 10,000-note base each make 5,000
//                 edits (2,500 notes edited on both sides, same field), one
//                 transaction per edit and, as a variant, one per side, and
//                 exchange their differences.
//
// Document shape: doc.getMap("notes") maps note ids to a Y.Map with title and
// body (strings, last writer wins per key), updatedAt (a number) and tags (a
// Y.Map from tag to true: a set). Ops counted as weft counts them.
//
// Invariants: stdout carries JSON lines only; every workload checks that the
// replicas it syncs or merges end equal. Thread-safety: single-threaded.

import * as Y from "yjs";
import { fileURLToPath } from "node:url";
import {
  childLoadRun, countOps, emit, fmtBytes, gc, header, loadWorkload, mem, median, mergeEdits, msSince,
  notesPlan, nowNs, parseArgs, pools, progress, round, runWorkloads, smallOp,
} from "./common.mjs";

const SYSTEM = "yjs";
const SELF = fileURLToPath(import.meta.url);
const WORKLOADS = ["write", "load", "initial_sync", "small_change", "reconnect", "merge"];
const USAGE = `usage: node yjs.mjs [--quick] [--sizes 1000,10000,100000] [--reps N] [WORKLOAD...]
  workloads: ${WORKLOADS.join(" ")} (default: all)
`;

// ---- the document ----

function applyOp(notes, op) {
  let m;
  if (op.create) {
    m = new Y.Map();
    notes.set(op.id, m);
  } else {
    m = notes.get(op.id);
  }
  if (op.kind === "tag") {
    let t = m.get("tags");
    if (!t) {
      t = new Y.Map();
      m.set("tags", t);
    }
    t.set(op.value, true);
  } else {
    m.set(op.field, op.value);
  }
}

function build(doc, txns, mode) {
  const notes = doc.getMap("notes");
  if (mode === "batched") {
    for (const t of txns) doc.transact(() => { for (const op of t) applyOp(notes, op); });
  } else {
    for (const t of txns) for (const op of t) doc.transact(() => applyOp(notes, op));
  }
}

/** Touches every field of every note; returns [entities, fields]. */
function readAll(doc) {
  let ents = 0, fields = 0, acc = 0;
  doc.getMap("notes").forEach((m) => {
    ents++;
    m.forEach((v, k) => {
      fields++;
      if (k === "tags") v.forEach((_x, tag) => { acc += tag.length; });
      else acc += typeof v === "string" ? v.length : 1;
    });
  });
  return [ents, fields, acc];
}

function readOne(doc, id) {
  const m = doc.getMap("notes").get(id);
  let fields = 0;
  m.forEach((v, k) => {
    fields++;
    if (k === "tags") v.forEach(() => {});
  });
  return fields;
}

function newDocFrom(update) {
  const d = new Y.Doc();
  Y.applyUpdate(d, update);
  return d;
}

/**
 * The state-vector exchange both ways (sync step 1 and 2 in each direction):
 * returns {ms, bytes, messages}. Applies each answer to the other side.
 */
function svSync(a, b) {
  const t0 = nowNs();
  const svA = Y.encodeStateVector(a), svB = Y.encodeStateVector(b);
  const uAB = Y.encodeStateAsUpdate(a, svB), uBA = Y.encodeStateAsUpdate(b, svA);
  Y.applyUpdate(b, uAB);
  Y.applyUpdate(a, uBA);
  const ms = msSince(t0);
  return { ms, bytes: svA.length + svB.length + uAB.length + uBA.length, messages: 4,
           sv_bytes: svA.length + svB.length, update_bytes: uAB.length + uBA.length };
}

function sameDocs(a, b, what) {
  const va = Buffer.from(Y.encodeStateVector(a)), vb = Buffer.from(Y.encodeStateVector(b));
  if (!va.equals(vb)) throw new Error(`${what}: state vectors differ`);
  const ja = JSON.stringify(a.getMap("notes").toJSON()), jb = JSON.stringify(b.getMap("notes").toJSON());
  if (ja !== jb) throw new Error(`${what}: contents differ`);
}

function buildDoc(n, p) {
  const doc = new Y.Doc();
  const txns = notesPlan(n, p);
  const t0 = nowNs();
  build(doc, txns, "batched");
  return { doc, ops: countOps(txns), build_ms: msSince(t0) };
}

// ---- workloads ----

function wlWrite(cfg, p) {
  const n = cfg.notes;
  const txns = notesPlan(n, p);
  const ops = countOps(txns);
  const out = { bench: "write", system: SYSTEM, params: { notes: n, ops, txns: txns.length,
    durability: "in memory (no persistence)" } };
  const runs = 3; // each mode takes under a second here: the median of 3 runs
  for (const mode of ["batched", "per_op", "per_op_update_events"]) {
    progress(SYSTEM, `write: ${mode}`);
    const times = [];
    let r;
    for (let run = 0; run < runs; run++) {
      gc();
      const doc = new Y.Doc();
      let upd = 0, updates = 0;
      if (mode === "per_op_update_events") doc.on("update", (u) => { upd += u.length; updates++; });
      const t0 = nowNs();
      build(doc, txns, mode === "batched" ? "batched" : "per_op");
      times.push(msSince(t0));
      r = {};
      if (mode === "per_op_update_events") { r.update_events = updates; r.update_bytes = upd; }
      if (mode === "batched" && run === runs - 1) {
        const v1 = Y.encodeStateAsUpdate(doc), v2 = Y.encodeStateAsUpdateV2(doc);
        out.storage = { encoded_v1_bytes: v1.length, encoded_v2_bytes: v2.length,
                        bytes_per_note: Math.round(v1.length / n) };
        gc();
        out.memory_after_build = mem();
      }
      doc.destroy();
    }
    const ms = median(times);
    out[mode] = { ms: round(ms, 1), ms_min: round(Math.min(...times), 1), runs,
                  ops_per_s: Math.round(ops / (ms / 1e3)), ...r };
  }
  emit(out, `write: ${n} notes, ${ops} ops: batched ${out.batched.ops_per_s} ops/s, one txn per op ` +
    `${out.per_op.ops_per_s} ops/s (with update events ${out.per_op_update_events.ops_per_s}) | ` +
    `encoded ${fmtBytes(out.storage.encoded_v1_bytes)} (V2 ${fmtBytes(out.storage.encoded_v2_bytes)}) | in memory`);
}

function wlLoad(cfg, p) {
  const { doc } = buildDoc(cfg.notes, p);
  loadWorkload(cfg, { system: SYSTEM, self: SELF, ext: "yjs", bytes: Y.encodeStateAsUpdate(doc), load: newDocFrom,
                      readAll, free: (d) => d.destroy(), method: "Y.applyUpdate into a new Y.Doc",
                      loadWord: "applyUpdate",
                      memText: (m) => `heap ${fmtBytes(m.heap_used)}, rss ${fmtBytes(m.rss)}` });
}

function wlInitialSync(cfg, p) {
  const n = cfg.notes, reps = cfg.quick ? 3 : 5;
  const { doc: a } = buildDoc(n, p);
  const rs = [];
  for (let r = 0; r < reps; r++) {
    gc();
    const b = new Y.Doc();
    rs.push(svSync(a, b));
    sameDocs(a, b, "initial_sync");
  }
  const ms = median(rs.map((r) => r.ms));
  const x = rs[0];
  emit({ bench: "initial_sync", system: SYSTEM,
         params: { notes: n, reps, protocol: "state vectors both ways, encodeStateAsUpdate(doc, sv) both ways; in process, no transport" },
         converge_ms: round(ms, 2), converge_ms_min: round(Math.min(...rs.map((r) => r.ms)), 2),
         bytes: x.bytes, messages: x.messages, sv_bytes: x.sv_bytes, update_bytes: x.update_bytes },
       `initial_sync: ${n} notes in ${round(ms, 1)} ms, ${fmtBytes(x.bytes)} (in process, no transport)`);
}

/** small_change and reconnect at each size, from one build per size. */
function syncSizes(cfg, p, want) {
  const small = {}, rec = {};
  for (const n of cfg.sizes) {
    progress(SYSTEM, `sync at ${n} notes: building`);
    gc();
    const { doc: a, ops, build_ms } = buildDoc(n, p);
    const t0 = nowNs();
    const b = newDocFrom(Y.encodeStateAsUpdate(a));
    const full_ms = msSince(t0);
    sameDocs(a, b, "full sync");
    const reps = n >= 100000 ? Math.min(cfg.reps, 5) : cfg.reps;
    let seq = 0;
    if (want.includes("reconnect")) {
      const rr = [];
      for (let r = 0; r < reps; r++) rr.push(svSync(a, b));
      sameDocs(a, b, "reconnect");
      rec[n] = { ops, build_ms: round(build_ms, 0), reps, ms_median: round(median(rr.map((r) => r.ms)), 3),
                 bytes_median: median(rr.map((r) => r.bytes)), sv_bytes: rr[0].sv_bytes,
                 update_bytes: rr[0].update_bytes };
    }
    if (want.includes("small_change")) {
      // (a) live: the update event's bytes go to the peer as they are.
      const push = [];
      let pending = null;
      const onUpd = (u) => { pending = u; };
      a.on("update", onUpd);
      const notes = a.getMap("notes");
      for (let r = 0; r < reps; r++) {
        const op = smallOp(seq++, p, n);
        a.transact(() => applyOp(notes, op));
        const t1 = nowNs(); // from A's change returning, as weft's push
        const u = pending;
        Y.applyUpdate(b, u);
        push.push({ ms: msSince(t1), bytes: u.length });
        if (b.getMap("notes").get(op.id).get("title") !== op.value) throw new Error("push not applied");
      }
      a.off("update", onUpd);
      // (b) fresh session: the change made while apart, then the exchange.
      const fresh = [];
      for (let r = 0; r < reps; r++) {
        const op = smallOp(seq++, p, n);
        a.transact(() => applyOp(notes, op));
        const t1 = nowNs();
        const s = svSync(a, b);
        fresh.push({ ms: msSince(t1), bytes: s.bytes });
        if (b.getMap("notes").get(op.id).get("title") !== op.value) throw new Error("fresh not applied");
      }
      sameDocs(a, b, "small_change");
      small[n] = { ops, build_ms: round(build_ms, 0), full_sync_ms: round(full_ms, 1), reps,
        push: { ms_median: round(median(push.map((r) => r.ms)), 3), bytes_median: median(push.map((r) => r.bytes)) },
        fresh: { ms_median: round(median(fresh.map((r) => r.ms)), 3), bytes_median: median(fresh.map((r) => r.bytes)) } };
    }
    a.destroy();
    b.destroy();
  }
  if (want.includes("small_change")) {
    emit({ bench: "small_change", system: SYSTEM,
           params: { op: "one title set (~20 chars)", push: "the update event's bytes applied on the live peer",
                     fresh: "change while apart, then state vectors + answers both ways", transport: "none (in process)" },
           sizes: small },
         "small_change: " + Object.entries(small).map(([n, s]) =>
           `${n} notes: push ${s.push.ms_median} ms ${s.push.bytes_median} B, fresh ${s.fresh.ms_median} ms ${fmtBytes(s.fresh.bytes_median)}`).join(" | "));
  }
  if (want.includes("reconnect")) {
    emit({ bench: "reconnect", system: SYSTEM,
           params: { protocol: "in sync: state vectors + encodeStateAsUpdate(doc, sv) both ways", transport: "none (in process)" },
           sizes: rec },
         "reconnect: " + Object.entries(rec).map(([n, s]) =>
           `${n} notes ${s.ms_median} ms ${fmtBytes(s.bytes_median)} (state vectors ${s.sv_bytes} B)`).join(" | "));
  }
}

function wlMerge(cfg, p) {
  const n = cfg.notes, reps = cfg.quick ? 3 : 5;
  const { doc: base } = buildDoc(n, p);
  const baseUpd = Y.encodeStateAsUpdate(base);
  const ea = mergeEdits(n, "a", p), eb = mergeEdits(n, "b", p);
  const variants = {};
  // One transaction per edit (a user's edits) and one for all of a side's.
  for (const [vname, perTxn] of [["per_edit", 1], ["one_txn_per_side", ea.length]]) {
    const rs = [];
    for (let r = 0; r < reps; r++) {
      gc();
      const a = newDocFrom(baseUpd), b = newDocFrom(baseUpd);
      for (const [d, e] of [[a, ea], [b, eb]]) {
        const notes = d.getMap("notes");
        for (let i = 0; i < e.length; i += perTxn) {
          d.transact(() => { for (const op of e.slice(i, i + perTxn)) applyOp(notes, op); });
        }
      }
      rs.push(svSync(a, b));
      sameDocs(a, b, "merge");
      a.destroy();
      b.destroy();
    }
    variants[vname] = { edits_per_txn: perTxn, merge_ms: round(median(rs.map((r) => r.ms)), 2),
                        merge_ms_min: round(Math.min(...rs.map((r) => r.ms)), 2), bytes: rs[0].bytes };
  }
  const h = variants.per_edit;
  emit({ bench: "merge", system: SYSTEM,
         params: { notes: n, edits_per_side: ea.length, overlap_notes: n / 4, reps,
                   method: "state vectors + encodeStateAsUpdate(doc, sv) both ways, applied both ways, in process" },
         merge_variant: "per_edit", merge_ms: h.merge_ms, merge_ms_min: h.merge_ms_min, bytes: h.bytes, variants },
       `merge: 2 x ${ea.length} edits on ${n} notes: one txn per edit ${round(h.merge_ms, 1)} ms, ${fmtBytes(h.bytes)}` +
       ` | one txn per side ${round(variants.one_txn_per_side.merge_ms, 1)} ms, ${fmtBytes(variants.one_txn_per_side.bytes)}`);
}

// ---- main ----

const argv = process.argv.slice(2);
if (argv[0] === "--child-load") {
  childLoadRun(argv[1], argv[2], argv[3], newDocFrom, readAll, readOne);
} else {
  const cfg = parseArgs(argv, WORKLOADS, USAGE);
  header(SYSTEM, ["yjs", "lib0"]);
  runWorkloads(cfg, pools(3), { write: wlWrite, load: wlLoad, initial_sync: wlInitialSync, merge: wlMerge,
                                sizes: syncSizes });
}
