/* crdt/fstate.c - placeholder, being written. */
typedef int weft__placeholder_crdt_fstate_c;
