/* crdt/mp.c - placeholder, being written. */
typedef int weft__placeholder_crdt_mp_c;
