/* sim.h - an in-memory network for sync sessions: N real stores (temp dirs
 * under /dev/shm), links between pairs of them, one weft__session per side
 * of each live link, and a frame queue per direction. A seeded RNG decides
 * which deliverable frame moves next, per-frame delays, connection cuts (both
 * sessions destroyed, queued frames dropped, new sessions after a while),
 * and optionally duplicated or reordered frames. Time is simulated: one
 * counter feeds the sessions and, through weft_options.now_ms, every store's
 * clock (plus a per-node skew), so a run replays exactly from its seed.
 *
 * Faults besides the network's: a replica restart (sim_restart: the process
 * "crashes": its sessions are dropped without saving, its store closed and
 * reopened from disk, its links down for a while), and clock faults
 * (sim_set_skew: a node's wall clock offset by minutes or a year, or stepped
 * back). With track_acks on, the simulator records every op id each replica
 * acknowledged: its own committed writes, and the ops of every batch it
 * ACKed (the prefix its ACK's vector covers), read off the frames.
 *
 * Determinism: device keys are the only randomness a store draws (libsodium's
 * randombytes). sim_init installs a randombytes implementation seeded from
 * the run's seed, so keys, device ids and hence op order replay too; the
 * temp directory names are the only thing that differs between replays.
 * m->trace hashes every frame delivered and every id issued, so a replay can
 * be compared with the original.
 *
 * Invariants:
 *   1. Frames within one direction of one link are delivered in order,
 *      except when dup/reorder deliberately break that.
 *   2. A session that returns an error from recv or poll closes its link:
 *      its queued frames (the ERROR) reach the other side, then both
 *      sessions are destroyed.
 *   3. A link is up only while neither of its nodes is down (restarting).
 *   4. Each node's writes issue strictly increasing op ids, across restarts
 *      and wall-clock steps back (sim_write asserts it).
 * Thread-safety: single-threaded tests only; one sim per process at a time
 * (the randombytes stream is global).
 */
#ifndef WEFT_TEST_SIM_H
#define WEFT_TEST_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store_int.h"
#include "transport/transport_int.h"

#define SIM_NODES     8
#define SIM_LINKS     16
#define SIM_BURST_MAX 16 /* the largest burst_max */
#define SIM_EPOCH     UINT64_C(1700000000000)

typedef struct sim sim;

typedef struct sim_frame {
    uint8_t *p;
    size_t len;
    uint64_t at; /* deliverable from this time */
} sim_frame;

typedef struct sim_q {
    sim_frame *v;
    size_t head, n, cap, bytes;
} sim_q;

/* Op ids, unsorted, possibly repeated. */
typedef struct sim_ids {
    weft_id *v;
    size_t n, cap;
} sim_ids;

/* The ids of one OPS batch delivered to a side, until that side ACKs it. */
typedef struct sim_batch {
    uint64_t seq;
    sim_ids ids;
} sim_batch;

typedef struct sim_inbox {
    sim_batch *v;
    size_t n, cap;
} sim_inbox;

typedef struct sim_node {
    sim *owner;
    char *dir;
    weft_store *s;
    weft_options opt; /* what the store is reopened with after a restart */
    int64_t skew_ms;
    int64_t skew_max_ms; /* greatest skew_ms ever: bounds the node's clock */
    uint64_t down_until; /* restarting: no link of it comes up before this */
    weft_id last_id;     /* the last id its writes issued (0 before any) */
    sim_ids acked;       /* ids it acknowledged (track_acks) */
    uint64_t restarts;   /* sim_restart calls */
    uint64_t step_backs; /* sim_set_skew calls that moved its wall clock back */
    uint64_t changes;    /* bumped by its writes, batches it applied, restarts (lazy_poll) */
    weft_role role;
    uint8_t pk[WEFT_KEY_BYTES];
    char name[16];
    uint64_t events[8];           /* count per weft_event_kind */
    char last_skew[WEFT_MSG_MAX]; /* message of the last WEFT_EV_SKEW */
} sim_node;

typedef struct sim_link {
    int a, b;
    bool enabled, up;
    weft__session *sa, *sb;
    sim_q ab, ba;
    sim_inbox in_a, in_b; /* batches delivered to a (b), not yet ACKed (track_acks) */
    uint64_t reconnect_at;
    uint64_t seen_a, seen_b; /* node changes at the last poll of each side (lazy_poll) */
    /* Totals over every session of this link (a side, b side). */
    uint64_t sessions, closes, errors;
    uint64_t ops_sent_a, ops_sent_b, max_inflight;
    uint64_t deferred, gaps; /* drift-horizon deferrals and gap ACKs, both sides */
    bool mute[2];            /* a one-way partition: frames a to b ([0]), b to a ([1]) held */
    uint64_t muted;          /* frames sent while held */
    size_t max_queued_bytes;
} sim_link;

struct sim {
    uint64_t now; /* ms since SIM_EPOCH */
    uint64_t rng, seed;
    sim_node node[SIM_NODES];
    int nnodes;
    sim_link link[SIM_LINKS];
    int nlinks;
    /* knobs */
    unsigned delay_max;         /* ms, per frame */
    unsigned cut_per_mille;     /* chance per step of cutting a random live link */
    unsigned dup_per_mille;     /* chance per frame of duplicating it */
    unsigned reorder_per_mille; /* chance per frame of swapping it with the previous */
    unsigned reconnect_ms;
    unsigned burst_max;    /* frames of one direction handed to weft__session_recv_many at
                            * once: 1..burst_max at random (0 or 1: one at a time, and no
                            * random draw, so older seeds replay unchanged) */
    weft__session_cfg cfg; /* window, batch sizes, heartbeat... (peer_key/role set per side) */
    bool track_acks;       /* record acknowledged ids (sim_ids per node) */
    bool lazy_poll;        /* poll a session only on its deadline or a change of its store,
                            * as the engine does; else every session every step (tests that
                            * write to stores behind the simulator's back need that) */
    uint64_t steps;
    uint64_t runs;  /* deliveries of 2 or more OPS at once (burst_max) */
    uint64_t trace; /* hash of every frame delivered and id issued (replay check) */
};

uint64_t sim_rand(sim *m);
void sim_init(sim *m, uint64_t seed);
void sim_destroy(sim *m);
int sim_node_add(sim *m, weft_role role, int64_t skew_ms);
/** Link @p a and @p b (each becomes a peer of the other); enabled. */
int sim_link_add(sim *m, int a, int b);
/** Enable (connect, reconnecting after cuts) or disable (cut, stay down). */
void sim_link_enable(sim *m, int l, bool on);
void sim_cut(sim *m, int l);
/** A one-way partition of link @p l: while @p on, frames in direction @p dir
 * (0: a to b, 1: b to a) are held back, in order, as a stalled TCP stream
 * holds them (the other way works): delivered if the partition heals before
 * the connection drops, lost with it otherwise. The deaf side sees a silent
 * peer, fails, and the link reconnects as usual. */
void sim_link_mute(sim *m, int l, int dir, bool on);
/** One scheduling step. */
void sim_step(sim *m);
/** Every enabled link up, both sessions caught up, nothing queued. */
bool sim_quiet(sim *m);
/** Step until quiet (true) or @p max_steps (false). */
bool sim_run(sim *m, uint64_t max_steps);
/** One random write (set, del, inc, add, rem, resolve) on node @p n.
 * Asserts that the op id it issued (if any: del/rem/resolve of nothing
 * issue none) is above every id the node issued before. */
void sim_write(sim *m, int n);
/** Crash and restart node @p n: its sessions are dropped without saving
 * (unsaved ACKs are lost, as in a crash), the peer side of each is saved
 * and destroyed as a peer's engine would on losing the connection, queued
 * frames are dropped, the store is closed and reopened from its directory,
 * and no link of the node comes up for @p down_ms. Before closing, asserts
 * the node's clock stayed within its horizon; after reopening, asserts the
 * store holds every id the node acknowledged (track_acks), that its last
 * issued hlc persisted, and that its persisted acknowledged vector of each
 * linked peer is no more than what that peer holds. */
void sim_restart(sim *m, int n, uint64_t down_ms);
/** Set node @p n's wall-clock offset (a step back when lower than before). */
void sim_set_skew(sim *m, int n, int64_t skew_ms);
/** The node's wall clock now, ms since the Unix epoch. */
uint64_t sim_wall(const sim *m, int n);
/** Assert the node's HLC (in memory) and every op it holds are no further
 * ahead than its wall clock ever was plus the drift horizon: no remote stamp
 * beyond the horizon moved it. */
void sim_check_clock(sim *m, int n);
/** Does node @p n's op log hold @p id (looked up in `ops`, not the vv)? */
bool sim_holds(sim *m, int n, weft_id id);
/** Assert every id any node acknowledged is held by every node; returns the
 * number of distinct ids checked. */
uint64_t sim_check_acked(sim *m);
/** The greatest hlc held by any node (0 if none). */
uint64_t sim_max_hlc(sim *m);
/** Byte-compare the dumps of the replicated state of two nodes. */
bool sim_same(sim *m, int a, int b);
/** The node's store version vector (caller destroys). */
weft_vv *sim_vv(sim *m, int n);
bool sim_vv_eq(const weft_vv *a, const weft_vv *b);
/** Seed from WEFT_SEED or a fixed default; cases from WEFT_CASES. */
uint64_t sim_env_seed(uint64_t dflt);
unsigned sim_env_cases(unsigned dflt);

#endif
