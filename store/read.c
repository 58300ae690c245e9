/* store/read.c - placeholder, being written. */
typedef int weft__placeholder_store_read_c;
