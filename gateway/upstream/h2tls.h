/*
 * TLS of the gateway's upstream connections (OpenSSL, client side, over a
 * non-blocking socket): the service's certificate is verified against the
 * CA file (or the system's roots) and the expected name, the gateway's own
 * certificate is presented for mTLS, ALPN offers "h2", and the policy is
 * the listener's (TLS 1.2+, ECDHE + AEAD; gateway/tls/tls.h).
 */
#ifndef GW_UPSTREAM_H2TLS_H
#define GW_UPSTREAM_H2TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/*
 * A client context from the files (checked by das_tls_pem_load first:
 * parse, key match, validity). ca_file NULL or "" = the system's roots;
 * cert_file and key_file both or neither. Returns NULL with a one-line
 * reason in err. Free with SSL_CTX_free (connections hold references).
 */
SSL_CTX *h2tls_ctx_new(const char *ca_file, const char *cert_file,
		       const char *key_file, char *err, size_t err_size);

/*
 * A connection on fd checking that the service's certificate names
 * server_name (a DNS name, sent as SNI, or an IP literal). NULL on error.
 */
SSL *h2tls_new(SSL_CTX *ctx, int fd, const char *server_name);

/* One handshake step: 0 done (and the peer agreed to h2 or sent no
 * ALPN), 1 again when the socket is ready, -1 failed. */
int h2tls_handshake(SSL *ssl);

/* Like recv/send: > 0, 0 at the end of the stream (read), or -1 with
 * errno EAGAIN (again when the socket is ready) or EPROTO. */
ssize_t h2tls_read(SSL *ssl, void *buf, size_t len);
ssize_t h2tls_write(SSL *ssl, const void *buf, size_t len);

#endif
