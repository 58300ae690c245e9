/* store/write.c - placeholder, being written. */
typedef int weft__placeholder_store_write_c;
