/* store/apply.c - placeholder, being written. */
typedef int weft__placeholder_store_apply_c;
