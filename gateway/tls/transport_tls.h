/* HTTPS under the gateway's event loop (see gateway/tls/tls.h). */
#ifndef GW_TLS_TRANSPORT_TLS_H
#define GW_TLS_TRANSPORT_TLS_H

#include "gateway/http/transport.h"

/* The listener's ctx (transport_ctx) is a struct gw_tls_ctx *; each
 * connection's io->state its struct gw_tls_conn *. */
extern const struct gw_transport gw_transport_tls;

#endif
