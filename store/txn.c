/* store/txn.c - placeholder, being written. */
typedef int weft__placeholder_store_txn_c;
