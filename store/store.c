/* store/store.c - placeholder, being written. */
typedef int weft__placeholder_store_store_c;
