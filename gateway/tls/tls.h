/*
 * HTTPS for the gateway's listener: TLS over a non-blocking socket with
 * OpenSSL, shaped for an event loop that reads, writes, shuts down and
 * closes a connection through a small transport interface (a handshake
 * step, then reads and writes that answer "again later" with EAGAIN).
 *
 * Policy: TLS 1.2 and 1.3 only; TLS 1.2 with ECDHE and AEAD ciphers only
 * (AES-GCM, ChaCha20-Poly1305), TLS 1.3 with its three standard suites;
 * no renegotiation, no compression; ALPN selects http/1.1 when offered.
 *
 * The certificate and key are reloadable: gw_tls_ctx_reload builds a new
 * SSL_CTX and swaps it in for new connections; connections already open
 * keep a reference to the context they started with, so none is dropped.
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The gateway's TLS policy, on the listener and towards the service.
 * TLS 1.2: forward secrecy and AEAD only (Mozilla "intermediate"). */
#define GW_TLS12_CIPHERS                                                     \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"         \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"         \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define GW_TLS13_SUITES                                                      \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"                     \
	"TLS_CHACHA20_POLY1305_SHA256"
#define GW_TLS_GROUPS "X25519:P-256:P-384"

struct gw_tls_ctx;
struct gw_tls_conn;

/*
 * Reads and checks cert_file (PEM chain, leaf first) and key_file (its
 * unencrypted private key). Returns NULL with a one-line reason in err.
 */
struct gw_tls_ctx *gw_tls_ctx_new(const char *cert_file, const char *key_file,
				  char *err, size_t err_size);

/*
 * Reads the files again; new connections use them. Returns 0, or -1 with
 * the reason in err, the current certificate staying in use.
 */
int gw_tls_ctx_reload(struct gw_tls_ctx *ctx, char *err, size_t err_size);

/* Frees ctx (open connections keep their own reference). NULL: no-op. */
void gw_tls_ctx_free(struct gw_tls_ctx *ctx);

/* A server-side TLS connection on the non-blocking socket fd; NULL on OOM. */
struct gw_tls_conn *gw_tls_conn_new(struct gw_tls_ctx *ctx, int fd);

/*
 * One handshake step. Returns 0 when the handshake is done, 1 to be called
 * again when the socket is ready (gw_tls_wants_write says for what), -1
 * when the peer is to be dropped (plaintext, TLS < 1.2, no shared cipher).
 */
int gw_tls_handshake(struct gw_tls_conn *c);

/*
 * Like recv/send: > 0 bytes, 0 at the end of the stream (read only), or
 * -1 with errno EAGAIN (again when the socket is ready, see
 * gw_tls_wants_write) or another errno (EPROTO for a TLS error): drop.
 * Writes may be partial; a write that answered EAGAIN must be repeated
 * with the same bytes.
 */
ssize_t gw_tls_read(struct gw_tls_conn *c, void *buf, size_t len);
ssize_t gw_tls_write(struct gw_tls_conn *c, const void *buf, size_t len);

/* After a 1 or EAGAIN: true when the socket must become writable. */
bool gw_tls_wants_write(const struct gw_tls_conn *c);

/* Sends close_notify (best effort, never blocks) and shuts down writing. */
void gw_tls_shutdown(struct gw_tls_conn *c);

/* Frees c; the socket is the caller's to close. NULL is a no-op. */
void gw_tls_conn_free(struct gw_tls_conn *c);

/* "TLSv1.3" and the cipher name, once the handshake is done. */
const char *gw_tls_version(const struct gw_tls_conn *c);
const char *gw_tls_cipher(const struct gw_tls_conn *c);

#endif
