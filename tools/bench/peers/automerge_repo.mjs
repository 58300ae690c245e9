// tools/bench/peers/automerge_repo.mjs - weft-bench's sync workloads on
// automerge-repo over a real WebSocket on 127.0.0.1, between TWO processes,
// as weft's sync workloads run (A: this process, a Repo with a
// WebSocketServerAdapter holding the notes document; B: a child process, this
// script with --child, a Repo with a WebSocketClientAdapter that connects).
// Neither Repo has storage: both are in memory, and the sync states of a
// session are not kept across sessions.
//
//   initial_sync  B, empty, finds the 10,000-note document: time from B
//                 starting to connect until B's heads equal A's.
//   small_change  at 1,000 / 10,000 / 100,000 notes, B holding a copy
//                 (repo.import of A's saved bytes under the same document id):
//                 (a) push: a live session; A changes one title; time from A's
//                 change returning until B's heads equal A's (clocks: both
//                 processes read CLOCK_MONOTONIC), bytes that moved;
//                 (b) fresh: B stopped, A changes one title, a new B (holding
//                 the document as it was before the change) connects: time
//                 from connecting to B holding the change, bytes of the session.
//   reconnect     at the same sizes: B holding the same document connects:
//                 bytes and time until the exchange is over (no bytes for
//                 250 ms; the time is that of the last byte).
//
// Bytes are B's TCP payload both ways (net.Socket bytesRead + bytesWritten of
// the WebSocket): the HTTP upgrade, WebSocket framing, automerge-repo's CBOR
// envelopes and the Automerge sync messages inside. The documents are built by
// automerge.mjs's buildDoc (same shape, same plan); with WEFT_PEERS_CACHE set,
// the ones automerge.mjs already built are loaded from there.
//
// Invariants: stdout carries JSON lines only; every session ends with B's
// heads equal to A's. Children are ended ("quit", then killed after 10 s)
// before the workload returns. Thread-safety: single-threaded per process.

import * as A from "@automerge/automerge";
import { Repo } from "@automerge/automerge-repo";
import { WebSocketClientAdapter, WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket";
import { WebSocketServer } from "ws";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { savedDoc } from "./automerge.mjs";
import {
  emit, fmtBytes, gc, header, median, msSince, nowNs, parseArgs, pools, progress, round, smallOp,
} from "./common.mjs";

const SYSTEM = "automerge-repo";
const SELF = fileURLToPath(import.meta.url);
const WORKLOADS = ["initial_sync", "small_change", "reconnect"];
const USAGE = `usage: node automerge_repo.mjs [--quick] [--sizes 1000,10000,100000] [--reps N] [WORKLOAD...]
  workloads: ${WORKLOADS.join(" ")} (default: all)
`;
const QUIET_MS = 250;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const headsKey = (h) => [...h].sort().join(",");

// ================================================================ child (B)

async function childMain(port, docId, file) {
  const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
  const repo = new Repo({ network: [], peerId: `b-${process.pid}`, sharePolicy: async () => true });
  let handle = null, adapter = null, sock = null, lastIo = 0n, t0 = 0n;
  if (file) {
    handle = repo.import(readFileSync(file), { docId });
  }
  const counters = () => {
    const s = sock || (adapter && adapter.socket && adapter.socket._socket);
    return { read: s ? s.bytesRead : 0, written: s ? s.bytesWritten : 0, last_io_ns: String(lastIo) };
  };
  const waiters = [];
  const check = () => {
    if (!handle) {
      const h = repo.handles[docId];
      if (!h || !h.isReady()) return;
      handle = h;
      watch(handle);
    }
    if (!handle.isReady()) return;
    const k = headsKey(handle.heads());
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i].key === k) {
        const w = waiters.splice(i, 1)[0];
        w.fn();
      }
    }
  };
  const watch = (h) => {
    h.on("heads-changed", check);
    h.on("change", check);
  };
  if (handle) watch(handle);
  out({ ev: "ready", notes: handle ? Object.keys(handle.doc().notes).length : 0 });

  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const sp = line.indexOf(" ");
    const cmd = sp < 0 ? line : line.slice(0, sp);
    const arg = sp < 0 ? null : JSON.parse(line.slice(sp + 1));
    if (cmd === "go" || cmd === "wait") {
      const done = new Promise((fn) => waiters.push({ key: headsKey(arg.heads), fn }));
      if (cmd === "go") {
        t0 = nowNs();
        adapter = new WebSocketClientAdapter(`ws://127.0.0.1:${port}`);
        // Count and stamp I/O on the TCP socket under the WebSocket (the
        // repo calls connect() once its peer metadata has resolved).
        const hook = () => {
          if (sock || !adapter.socket || !adapter.socket._socket) return;
          sock = adapter.socket._socket;
          sock.on("data", () => { lastIo = nowNs(); });
          const w = sock.write;
          sock.write = function (...a) { lastIo = nowNs(); return w.apply(this, a); };
        };
        const connect = adapter.connect.bind(adapter);
        adapter.connect = (...a) => {
          connect(...a);
          adapter.socket.on("open", hook);
        };
        repo.networkSubsystem.addNetworkAdapter(adapter);
        if (!handle) {
          // find() resolves late (after its own follow-up round), so the
          // handle is polled every ms from the moment the repo has it.
          repo.find(docId).catch((e) => { process.stderr.write(`find: ${e}\n`); });
        }
      }
      check();
      const poll = setInterval(check, 1);
      await done;
      clearInterval(poll);
      const t = nowNs();
      out({ ev: cmd === "go" ? "synced" : "seen", t_ns: String(t), ms: Number(t - t0) / 1e6,
            notes: Object.keys(handle.doc().notes).length, ...counters() });
    } else if (cmd === "bytes") {
      out({ ev: "bytes", t0_ns: String(t0), ...counters() });
    } else if (cmd === "quit") {
      break;
    }
  }
  // Closing the process closes the socket; A sees the peer go.
  process.exit(0);
}

// ================================================================ parent (A)

class Child {
  constructor(port, docId, file) {
    this.proc = spawn(process.execPath, [SELF, "--child", String(port), docId, ...(file ? [file] : [])],
                      { stdio: ["pipe", "pipe", "inherit"] });
    this.events = [];
    this.waiting = null;
    this.exited = false;
    createInterface({ input: this.proc.stdout }).on("line", (l) => {
      this.events.push(JSON.parse(l));
      if (this.waiting) this.waiting();
    });
    this.proc.on("exit", (code) => {
      this.exited = true;
      this.code = code;
      if (this.waiting) this.waiting();
    });
  }

  send(cmd, arg) {
    this.proc.stdin.write(arg === undefined ? `${cmd}\n` : `${cmd} ${JSON.stringify(arg)}\n`);
  }

  /** The next event named @p ev, within @p ms. */
  async expect(ev, ms = 120000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.events.findIndex((e) => e.ev === ev);
      if (i >= 0) return this.events.splice(i, 1)[0];
      if (this.exited) throw new Error(`child exited (${this.code}) while A waited for '${ev}'`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`child: no '${ev}' within ${ms} ms`);
      await new Promise((r) => {
        const t = setTimeout(r, left);
        this.waiting = () => { clearTimeout(t); r(); };
      });
      this.waiting = null;
    }
  }

  async bytes() {
    this.send("bytes");
    const e = await this.expect("bytes", 10000);
    return { total: e.read + e.written, read: e.read, written: e.written, last_io_ns: BigInt(e.last_io_ns),
             t0_ns: BigInt(e.t0_ns) };
  }

  /**
   * Waits until a byte has moved and then none for QUIET_MS (at most 20 s);
   * the counters then.
   */
  async quiet() {
    const deadline = Date.now() + 20000;
    for (;;) {
      const b = await this.bytes();
      if (b.last_io_ns > 0n && Number(nowNs() - b.last_io_ns) / 1e6 >= QUIET_MS) return b;
      if (Date.now() > deadline) throw new Error("child: the session did not go quiet within 20 s");
      await sleep(50);
    }
  }

  async quit() {
    if (this.exited) return;
    this.send("quit");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 10000);
    await new Promise((r) => (this.exited ? r() : this.proc.on("exit", r)));
    clearTimeout(t);
  }
}

async function startServer() {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await once(wss, "listening");
  // As a sync server: it answers for the documents a peer asks for or
  // announces, and does not push every document it holds to every peer.
  const repo = new Repo({ network: [new WebSocketServerAdapter(wss)], peerId: "a", sharePolicy: async () => false });
  return { wss, repo, port: wss.address().port };
}

function changeTitle(handle, op) {
  handle.change((d) => { d.notes[op.id].title = new A.ImmutableString(op.value); });
}

async function wlInitialSync(cfg, p, srv) {
  const n = cfg.notes, reps = cfg.quick ? 2 : 3;
  progress(SYSTEM, `initial_sync: ${n} notes`);
  const c = savedDoc(n, p);
  const handle = srv.repo.import(c.saved);
  const heads = handle.heads();
  const rs = [];
  for (let r = 0; r < reps; r++) {
    gc();
    const ch = new Child(srv.port, handle.documentId, null);
    try {
      await ch.expect("ready");
      ch.send("go", { heads });
      const e = await ch.expect("synced");
      if (e.notes !== n) throw new Error(`initial_sync: B holds ${e.notes} notes`);
      const b = await ch.quiet();
      rs.push({ ms: e.ms, bytes: b.total, bytes_to_synced: e.read + e.written, a_to_b: b.read, b_to_a: b.written });
    } finally {
      await ch.quit();
    }
  }
  const ms = median(rs.map((r) => r.ms));
  emit({ bench: "initial_sync", system: SYSTEM,
         params: { notes: n, ops: c.ops, reps, saved_bytes: c.saved.length,
                   transport: "WebSocket on 127.0.0.1 (ws), two processes, no TLS; B connects; no storage" },
         converge_ms: round(ms, 2), converge_ms_min: round(Math.min(...rs.map((r) => r.ms)), 2),
         bytes: rs[0].bytes, bytes_a_to_b: rs[0].a_to_b, bytes_b_to_a: rs[0].b_to_a },
       `initial_sync: ${n} notes in ${round(ms, 1)} ms (min ${round(Math.min(...rs.map((r) => r.ms)), 1)}), ` +
       `${fmtBytes(rs[0].bytes)} over a loopback WebSocket`);
  srv.repo.delete(handle.documentId);
}

async function syncSizes(cfg, p, srv, want, dir) {
  const small = {}, rec = {};
  for (const n of cfg.sizes) {
    const t00 = nowNs();
    progress(SYSTEM, `sync at ${n} notes: building or loading`);
    const c = savedDoc(n, p);
    const handle = srv.repo.import(c.saved);
    const docId = handle.documentId;
    const big = n >= 100000;
    const reps = big ? Math.min(cfg.reps, 5) : cfg.reps;
    const freshReps = big ? 3 : Math.min(cfg.reps, 5);
    let file = join(dir, `doc-${n}.bin`);
    writeFileSync(file, c.saved);
    progress(SYSTEM, `sync at ${n} notes: reconnect`);
    // reconnect: a B holding the same document connects, reps times.
    const rr = [];
    let ch = null;
    for (let r = 0; r < reps; r++) {
      if (ch) await ch.quit();
      ch = new Child(srv.port, docId, file);
      await ch.expect("ready", 300000);
      ch.send("go", { heads: handle.heads() });
      await ch.expect("synced");
      const b = await ch.quiet();
      rr.push({ ms: Number(b.last_io_ns - b.t0_ns) / 1e6, bytes: b.total });
    }
    rec[n] = { ops: c.ops, reps, ms_median: round(median(rr.map((x) => x.ms)), 3),
               bytes_median: median(rr.map((x) => x.bytes)), bytes_min: Math.min(...rr.map((x) => x.bytes)),
               bytes_max: Math.max(...rr.map((x) => x.bytes)) };
    if (want.includes("small_change")) {
      progress(SYSTEM, `sync at ${n} notes: push`);
      // (a) push over the live session of the last reconnect.
      let seq = 0;
      const push = [];
      for (let r = 0; r < reps; r++) {
        const before = await ch.quiet();
        const op = smallOp(seq++, p, n);
        changeTitle(handle, op);
        const tc = nowNs();
        ch.send("wait", { heads: handle.heads() });
        const e = await ch.expect("seen");
        const after = await ch.quiet();
        push.push({ ms: Number(BigInt(e.t_ns) - tc) / 1e6, bytes: after.total - before.total });
      }
      await ch.quit();
      ch = null;
      progress(SYSTEM, `sync at ${n} notes: fresh sessions`);
      // (b) fresh: B holds the document as it was; A changes; B connects.
      const fresh = [];
      for (let r = 0; r < freshReps; r++) {
        file = join(dir, `doc-${n}-fresh.bin`);
        writeFileSync(file, A.save(handle.doc()));
        const nb = new Child(srv.port, docId, file);
        try {
          await nb.expect("ready", 300000);
          const op = smallOp(seq++, p, n);
          changeTitle(handle, op);
          nb.send("go", { heads: handle.heads() });
          const e = await nb.expect("synced");
          const b = await nb.quiet();
          fresh.push({ ms: e.ms, bytes: b.total });
        } finally {
          await nb.quit();
        }
      }
      small[n] = { ops: c.ops, reps, fresh_reps: freshReps,
        push: { ms_median: round(median(push.map((x) => x.ms)), 3), ms_max: round(Math.max(...push.map((x) => x.ms)), 3),
                bytes_median: median(push.map((x) => x.bytes)) },
        fresh: { ms_median: round(median(fresh.map((x) => x.ms)), 3), bytes_median: median(fresh.map((x) => x.bytes)) } };
    }
    if (ch) await ch.quit();
    srv.repo.delete(docId);
    gc();
    progress(SYSTEM, `sync at ${n} notes: ${round(msSince(t00) / 1e3, 1)} s`);
  }
  if (want.includes("small_change")) {
    emit({ bench: "small_change", system: SYSTEM,
           params: { op: "one title set (~20 chars), handle.change on A",
                     push: "live session: A's change returned -> B's heads equal A's; bytes moved until quiet",
                     fresh: "B (a new process holding the document before the change) connects: connect -> B holds it; session bytes",
                     transport: "WebSocket on 127.0.0.1, two processes", note: "automerge-repo throttles outgoing sync per document to one per 100 ms (syncDebounceRate)" },
           sizes: small },
         "small_change: " + Object.entries(small).map(([n, s]) =>
           `${n} notes: push ${s.push.ms_median} ms ${s.push.bytes_median} B, fresh ${s.fresh.ms_median} ms ${fmtBytes(s.fresh.bytes_median)}`).join(" | "));
  }
  if (want.includes("reconnect")) {
    emit({ bench: "reconnect", system: SYSTEM,
           params: { method: "B holding the same document connects; bytes until no byte moved for 250 ms; time to the last byte",
                     transport: "WebSocket on 127.0.0.1, two processes, no storage (sync states not kept)" },
           sizes: rec },
         "reconnect: " + Object.entries(rec).map(([n, s]) => `${n} notes ${s.ms_median} ms ${fmtBytes(s.bytes_median)}`).join(" | "));
  }
}

async function parentMain(argv) {
  const cfg = parseArgs(argv, WORKLOADS, USAGE);
  const p = pools(3);
  header(SYSTEM, ["@automerge/automerge-repo", "@automerge/automerge-repo-network-websocket", "@automerge/automerge", "ws"]);
  const dir = mkdtempSync("/var/tmp/weft-peers-amrepo-");
  const srv = await startServer();
  try {
    for (const w of cfg.workloads) {
      if (w === "initial_sync") await wlInitialSync(cfg, p, srv);
      else {
        const want = cfg.workloads.filter((x) => x === "small_change" || x === "reconnect");
        if (w === want[0]) await syncSizes(cfg, p, srv, want, dir);
      }
    }
  } finally {
    await Promise.race([srv.repo.shutdown(), sleep(2000)]);
    srv.wss.close();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

const argv = process.argv.slice(2);
if (argv[0] === "--child") childMain(Number(argv[1]), argv[2], argv[3]);
else parentMain(argv);
