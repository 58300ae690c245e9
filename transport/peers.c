/* store/peers.c - placeholder, being written. */
typedef int weft__placeholder_transport_peers_c;
