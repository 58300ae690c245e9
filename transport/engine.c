/* transport/engine.c - placeholder, being written. */
typedef int weft__placeholder_transport_engine_c;
