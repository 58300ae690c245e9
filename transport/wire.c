/* transport/wire.c - placeholder, being written. */
typedef int weft__placeholder_transport_wire_c;
