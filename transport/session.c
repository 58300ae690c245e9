/* transport/session.c - placeholder, being written. */
typedef int weft__placeholder_transport_session_c;
