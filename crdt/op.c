/* crdt/op.c - placeholder, being written. */
typedef int weft__placeholder_crdt_op_c;
