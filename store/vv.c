/* store/vv.c - placeholder, being written. */
typedef int weft__placeholder_store_vv_c;
