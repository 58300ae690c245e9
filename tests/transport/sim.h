/* sim.h - an in-memory network for sync sessions: N real stores (temp dirs
 * under /dev/shm), links between pairs of them, one weft__session per side
 * of each live link, and a frame queue per direction. A seeded RNG decides
 * which deliverable frame moves next, per-frame delays, connection cuts (both
 * sessions destroyed, queued frames dropped, new sessions after a while),
 * and optionally duplicated or reordered frames. Time is simulated: one
 * counter feeds the sessions and, through weft_options.now_ms, every store's
 * clock (plus a per-node skew), so a run replays exactly from its seed.
 *
 * Invariants:
 *   1. Frames within one direction of one link are delivered in order,
 *      except when dup/reorder deliberately break that.
 *   2. A session that returns an error from recv or poll closes its link:
 *      its queued frames (the ERROR) reach the other side, then both
 *      sessions are destroyed.
 * Thread-safety: single-threaded tests only.
 */
#ifndef WEFT_TEST_SIM_H
#define WEFT_TEST_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store_int.h"
#include "transport/transport_int.h"

#define SIM_NODES 8
#define SIM_LINKS 16
#define SIM_EPOCH UINT64_C(1700000000000)

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

typedef struct sim_node {
    sim *owner;
    char *dir;
    weft_store *s;
    int64_t skew_ms;
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
    uint64_t reconnect_at;
    /* Totals over every session of this link (a side, b side). */
    uint64_t sessions, closes, errors;
    uint64_t ops_sent_a, ops_sent_b, max_inflight;
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
    weft__session_cfg cfg; /* window, batch sizes, heartbeat... (peer_key/role set per side) */
    uint64_t steps;
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
/** One scheduling step. */
void sim_step(sim *m);
/** Every enabled link up, both sessions caught up, nothing queued. */
bool sim_quiet(sim *m);
/** Step until quiet (true) or @p max_steps (false). */
bool sim_run(sim *m, uint64_t max_steps);
/** One random write (set, del, inc, add, rem, resolve) on node @p n. */
void sim_write(sim *m, int n);
/** Byte-compare the dumps of the replicated state of two nodes. */
bool sim_same(sim *m, int a, int b);
/** The node's store version vector (caller destroys). */
weft_vv *sim_vv(sim *m, int n);
bool sim_vv_eq(const weft_vv *a, const weft_vv *b);
/** Seed from WEFT_SEED or a fixed default; cases from WEFT_CASES. */
uint64_t sim_env_seed(uint64_t dflt);
unsigned sim_env_cases(unsigned dflt);

#endif
