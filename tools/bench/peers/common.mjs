// tools/bench/peers/common.mjs - what the peer benches (automerge.mjs,
// automerge_repo.mjs, yjs.mjs) share: the notes workload of weft-bench
// (tools/bench/bench.c) as a plan of logical operations, its deterministic
// text pools, timing, statistics and the output conventions.
//
// Output, as weft-bench --json: stdout carries JSON lines only (a header, then
// ONE object per workload: {"bench":"<workload>","system":"<system>",...});
// a one-line human summary starting with "# " and progress messages go to
// stderr. Times are in ms (*_ms) or µs (*_us), sizes in bytes.
//
// Invariants:
//   1. The notes plan is the one of weft__bench_notes_build(): notes
//      n00000.., title ~20 chars (pool entry i % 256), body ~200 chars
//      (entry i*13 % 256), updatedAt int ms, 1 + i % 3 tags, then five
//      passes of single-field edits, the k-th edit of note i on field
//      (i + k) % 3 of (title, body, updatedAt); creation in transactions of
//      2,000 notes, edits in transactions of 10,000 ops.
//   2. The text pools come from the same xorshift64* generator, word list and
//      length rule as bench.c's gen_text() (seed 3, as weft's notes workload).
// Thread-safety: single-threaded (Node's event loop).

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const POOL = 256;
export const T_BASE = 1700000000000;
export const CREATE_CHUNK = 2000; // notes per creation transaction (bench.c)
export const EDIT_CHUNK = 10000; // ops per edit transaction (bench.c)
export const EDIT_PASSES = 5;
export const FIELDS = ["title", "body", "updatedAt"];
export const TAGS = ["work", "personal", "ideas", "todo", "travel", "reading", "family", "archive"];

// ---- deterministic text, as bench.c ----

const M64 = (1n << 64n) - 1n;

/** xorshift64*, bit for bit as bench.c's rng_next(): returns a BigInt. */
function rngNext(st) {
  let x = st.s;
  x ^= x >> 12n;
  x ^= (x << 25n) & M64;
  x ^= x >> 27n;
  st.s = x;
  return (x * 0x2545f4914f6cdd1dn) & M64;
}

const WORDS = [
  "the", "meeting", "notes", "about", "project", "plan", "for", "next", "week",
  "call", "with", "team", "ideas", "draft", "review", "budget", "list", "buy",
  "milk", "and", "bread", "fix", "bug", "in", "sync", "code", "travel",
  "to", "berlin", "book", "hotel", "read", "paper", "on", "crdts", "remember",
  "garden", "water", "plants", "quick", "thought", "later", "maybe", "todo", "weekend",
];

/** Words until about @p target chars (+-10%), as bench.c's gen_text(). */
function genText(st, target) {
  const span = BigInt(Math.floor(target / 5) + 1);
  const want = target - Math.floor(target / 10) + Number(rngNext(st) % span);
  let out = "";
  while (out.length < want) {
    const w = WORDS[Number(rngNext(st) % BigInt(WORDS.length))];
    if (out.length) out += " ";
    out += w;
  }
  out = out.slice(0, want);
  while (out.length > 1 && out.endsWith(" ")) out = out.slice(0, -1);
  return out;
}

/** The title and body pools of weft__bench_pools_init(p, seed). */
export function pools(seed = 3) {
  const st = { s: BigInt(seed) };
  const title = [], body = [];
  for (let i = 0; i < POOL; i++) {
    title.push(genText(st, 20));
    body.push(genText(st, 200));
  }
  return { title, body };
}

export function noteId(i) {
  return "n" + String(i).padStart(5, "0");
}

/**
 * The notes build as a list of transactions, each a list of logical ops
 * {id, kind: "set"|"tag", field, value} (value: string or integer; a tag op
 * adds value to the note's tag set). 30,000 sets + 19,999 tag adds + 50,000
 * edits at n = 10,000: 99,999 ops, the count weft reports.
 */
export function notesPlan(n, p) {
  const txns = [];
  let cur = null;
  for (let i = 0; i < n; i++) {
    if (i % CREATE_CHUNK === 0) txns.push((cur = []));
    const id = noteId(i);
    cur.push({ id, kind: "set", field: "title", value: p.title[i % POOL], create: true });
    cur.push({ id, kind: "set", field: "body", value: p.body[(i * 13) % POOL] });
    cur.push({ id, kind: "set", field: "updatedAt", value: T_BASE + i * 1000 });
    for (let k = 0; k < 1 + (i % 3); k++) {
      cur.push({ id, kind: "tag", field: "tags", value: TAGS[(i + k * 3) % 8] });
    }
  }
  for (let k = 0; k < EDIT_PASSES; k++) {
    for (let i = 0; i < n; i++) {
      if (i % EDIT_CHUNK === 0) txns.push((cur = []));
      cur.push(editOp(i, k, p));
    }
  }
  return txns;
}

/** The k-th edit of note i (k >= 5 continues the sequence: used by merge). */
export function editOp(i, k, p) {
  const id = noteId(i);
  const f = (i + k) % 3;
  if (f === 2) return { id, kind: "set", field: "updatedAt", value: T_BASE + 86400000 * (k + 1) + i * 1000 };
  if (f === 0) return { id, kind: "set", field: "title", value: p.title[(i + 17 * (k + 1)) % POOL] };
  return { id, kind: "set", field: "body", value: p.body[(i + 31 * (k + 1)) % POOL] };
}

/** One small change after a full sync: a ~20-char title, as sync_incremental. */
export function smallOp(r, p, n) {
  return { id: noteId((r * 7919) % n), kind: "set", field: "title", value: p.title[(r * 7 + 3) % POOL] };
}

/**
 * The merge workload's divergent edits, from a common n-note base: replica A
 * edits notes 0..e-1, B notes e/2..3e/2-1 (e = n/2 by default), each the
 * sixth edit of the plan's sequence (field (i + 5) % 3), so the two sets
 * overlap on e/2 notes where A and B write the same field concurrently.
 */
export function mergeEdits(n, side, p, e = n / 2) {
  const start = side === "a" ? 0 : Math.floor(e / 2);
  const ops = [];
  for (let j = 0; j < e; j++) {
    const op = editOp((start + j) % n, 5, p);
    // Different values on each side, so concurrent writes really conflict.
    if (side === "b" && op.field === "updatedAt") op.value += 1;
    if (side === "b" && op.field !== "updatedAt") op.value = op.value + " b";
    ops.push(op);
  }
  return ops;
}

export function countOps(txns) {
  let n = 0;
  for (const t of txns) n += t.length;
  return n;
}

// ---- time and statistics ----

/** CLOCK_MONOTONIC in ns (libuv's uv_hrtime): comparable across processes. */
export function nowNs() {
  return process.hrtime.bigint();
}

export function msSince(t0) {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export function median(v) {
  const s = [...v].sort((a, b) => a - b);
  if (!s.length) return 0;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function round(x, d = 3) {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

export function gc() {
  if (global.gc) global.gc();
}

export function mem() {
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heap_used: m.heapUsed,
    external: m.external,
    array_buffers: m.arrayBuffers,
  };
}

// ---- arguments and output ----

/**
 * Parses [--quick] [--sizes a,b,c] [--reps N] [--budget S] [WORKLOAD...]
 * against the workloads a script knows; exits 2 on a bad argument. --budget:
 * seconds after which a write mode that is one transaction per op stops
 * (default 60, quick 10).
 */
export function parseArgs(argv, known, usage) {
  const cfg = { quick: false, workloads: [], sizes: null, reps: null, budgetMs: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") cfg.quick = true;
    else if (a === "--sizes" && i + 1 < argv.length) cfg.sizes = argv[++i].split(",").map(Number);
    else if (a === "--reps" && i + 1 < argv.length) cfg.reps = Number(argv[++i]);
    else if (a === "--budget" && i + 1 < argv.length) cfg.budgetMs = Number(argv[++i]) * 1000;
    else if (a === "-h" || a === "--help") {
      process.stdout.write(usage);
      process.exit(0);
    } else if (known.includes(a)) cfg.workloads.push(a);
    else {
      process.stderr.write(`unknown argument '${a}'\n${usage}`);
      process.exit(2);
    }
  }
  if (cfg.sizes && cfg.sizes.some((s) => !(Number.isInteger(s) && s > 0))) {
    process.stderr.write("--sizes: positive integers\n");
    process.exit(2);
  }
  if (!cfg.workloads.length) cfg.workloads = [...known];
  cfg.notes = cfg.quick ? 1000 : 10000;
  cfg.sizes = cfg.sizes || (cfg.quick ? [100, 1000] : [1000, 10000, 100000]);
  cfg.reps = cfg.reps || (cfg.quick ? 3 : 15);
  cfg.budgetMs = cfg.budgetMs || (cfg.quick ? 10000 : 60000);
  return cfg;
}

export function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(join(HERE, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return "missing";
  }
}

export function header(system, packages) {
  const versions = {};
  for (const p of packages) versions[p] = pkgVersion(p);
  const cpus = os.cpus();
  const line = {
    bench: "header",
    system,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    node: process.version,
    v8: process.versions.v8,
    packages: versions,
    nproc: os.availableParallelism ? os.availableParallelism() : cpus.length,
    cpu: cpus.length ? cpus[0].model : "unknown",
    kernel: `${os.type()} ${os.release()}`,
    loadavg: os.loadavg().map((x) => round(x, 2)),
  };
  process.stdout.write(JSON.stringify(line) + "\n");
  process.stderr.write(`# ${system}: node ${process.version}, ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join(", ")}\n`);
}

export function emit(obj, summary) {
  process.stdout.write(JSON.stringify(obj) + "\n");
  process.stderr.write(`# ${summary}\n`);
}

export function progress(system, msg) {
  process.stderr.write(`peers/${system}: ${msg}\n`);
}

export function fmtBytes(b) {
  if (b >= 1e6) return `${(b / 1e6).toFixed(2)} MB`;
  if (b >= 1e3) return `${(b / 1e3).toFixed(1)} kB`;
  return `${b} B`;
}

/** Run the script @p self in a fresh node (with --expose-gc) with @p args;
 * its last stdout line is JSON. Returns that object plus process_wall_ms. */
export function runChild(self, args) {
  const t0 = nowNs();
  const r = spawnSync(process.execPath, ["--expose-gc", self, ...args], { encoding: "utf8", maxBuffer: 1 << 24 });
  const wall = msSince(t0);
  if (r.status !== 0) throw new Error(`child ${args.join(" ")}: ${r.stderr}`);
  return { ...JSON.parse(r.stdout.trim().split("\n").pop()), process_wall_ms: wall };
}

/** The fresh-process load of a saved document: @p runs children of @p self
 * (`--child-load FILE one|all ID`) per mode, each checked to have read the
 * expected notes and fields of an @p n-note document. Returns
 * {one, all, memory}: median total/load/read/process times per mode, and
 * the middle run's memory after reading all. */
export function childLoads(self, file, id, n, runs) {
  const res = {};
  for (const what of ["one", "all"]) {
    const rs = [];
    for (let i = 0; i < runs; i++) rs.push(runChild(self, ["--child-load", file, what, id]));
    const exp = what === "all" ? [n, 4 * n] : [1, 4];
    for (const r of rs) {
      if (r.entities !== exp[0] || r.fields !== exp[1]) {
        throw new Error(`load ${what}: read ${r.entities} notes / ${r.fields} fields, expected ${exp}`);
      }
    }
    const pick = (k) => round(median(rs.map((r) => r[k])), 3);
    res[what] = { total_ms: pick("total_ms"), load_ms: pick("load_ms"), read_ms: pick("read_ms"),
                  process_wall_ms: pick("process_wall_ms") };
    if (what === "all") res.memory = rs[rs.length >> 1].mem;
  }
  return res;
}

/** The child side of childLoads (`--child-load FILE one|all ID`): read
 * @p file, @p load it, read all notes or note @p id, and print the times
 * and memory as one JSON line. @p readAll(doc) returns [notes, fields],
 * @p readOne(doc, id) the fields. */
export function childLoadRun(file, what, id, load, readAll, readOne) {
  const t0 = nowNs();
  const doc = load(readFileSync(file));
  const load_ms = msSince(t0);
  const t1 = nowNs();
  let ents = 1, fields;
  if (what === "all") [ents, fields] = readAll(doc);
  else fields = readOne(doc, id);
  const read_ms = msSince(t1);
  const total_ms = msSince(t0);
  gc();
  process.stdout.write(JSON.stringify({ load_ms, read_ms, total_ms, entities: ents, fields, mem: mem() }) + "\n");
}

/** The `load` workload of a peer: @p bytes (the saved n-note document)
 * written to a file, loaded and read in this process (warm, for reference:
 * @p o.load, @p o.readAll, @p o.free) and in fresh processes (childLoads of
 * @p o.self), then one result line. @p o: {system, self, ext, bytes, load,
 * readAll, free, method (how a child loads), loadWord (the summary's name
 * for the load step), memText(memory) (the summary's memory part)}. */
export function loadWorkload(cfg, o) {
  const n = cfg.notes, runs = cfg.quick ? 3 : 7;
  const dir = mkdtempSync(`/var/tmp/weft-peers-${o.system}-`);
  try {
    const file = join(dir, `doc.${o.ext}`);
    writeFileSync(file, o.bytes);
    const id = noteId(n / 2);
    // For reference: the same in this process, warmed up (JIT, wasm tiers).
    const warmRuns = [];
    for (let i = 0; i < runs; i++) {
      gc();
      const t0 = nowNs();
      const d = o.load(o.bytes);
      o.readAll(d);
      warmRuns.push(msSince(t0));
      o.free(d);
    }
    const warm = { total_ms: round(median(warmRuns.slice(1)), 3) };
    const loads = childLoads(o.self, file, id, n, runs);
    emit({ bench: "load", system: o.system, params: { notes: n, runs, file_bytes: statSync(file).size,
            method: `fresh node process: read file + ${o.method}, then read` },
           load_read_one: loads.one, load_read_all: loads.all, load_read_all_warm_in_process: warm,
           memory_after_read_all: loads.memory },
         `load: ${n} notes, fresh process: load+read one ${loads.one.total_ms} ms, load+read all ` +
         `${loads.all.total_ms} ms (warm, in process: ${warm.total_ms} ms; ${o.loadWord} ${loads.all.load_ms} ms) | ` +
         o.memText(loads.memory));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Run @p cfg.workloads in order with the handlers of @p wl ({write, load,
 * initial_sync, merge: (cfg, p) => void; sizes: (cfg, p, which) => void}):
 * small_change and reconnect share one sizes pass, at the first of them. */
export function runWorkloads(cfg, p, wl) {
  const sizes = cfg.workloads.filter((x) => x === "small_change" || x === "reconnect");
  for (const w of cfg.workloads) {
    if (w === "small_change" || w === "reconnect") {
      if (w === sizes[0]) wl.sizes(cfg, p, sizes);
    } else {
      wl[w](cfg, p);
    }
  }
}
