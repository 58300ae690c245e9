/* store/notify.c - placeholder, being written. */
typedef int weft__placeholder_store_notify_c;
