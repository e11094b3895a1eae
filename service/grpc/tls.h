/*
 * TLS for the gRPC server: the certificate, its key and (for mTLS) the CA
 * that client certificates must chain to, reloadable while the server runs.
 *
 * gRPC asks for the certificate configuration through a fetcher before
 * each new handshake; a reload only prepares the next configuration, so
 * connections and calls in flight keep the material they started with and
 * new connections get the new one. A reload that fails (unreadable file,
 * key not matching the certificate, expired certificate) leaves the
 * current configuration in place.
 */
#ifndef DAS_GRPC_TLS_H
#define DAS_GRPC_TLS_H

#include <stddef.h>

#include <grpc/grpc_security.h>

struct server_tls_files {
	const char *cert_file;      /* PEM chain, leaf first */
	const char *key_file;       /* PEM private key of the leaf */
	const char *client_ca_file; /* NULL = no client certificates (no mTLS) */
};

struct server_tls;

/*
 * Reads and checks the files (paths are copied; they are read again on
 * reload). Returns NULL with a one-line reason in err.
 */
struct server_tls *server_tls_new(const struct server_tls_files *files,
				  char *err, size_t err_size);

/*
 * New server credentials that fetch their configuration from tls (which
 * must outlive the server). With a client CA, clients must present a
 * certificate that chains to it.
 */
grpc_server_credentials *server_tls_credentials(struct server_tls *tls);

/*
 * Reads the files again. Returns 0 when the new material was accepted and
 * will serve the next handshakes, or -1 with the reason in err (the old
 * material stays).
 */
int server_tls_reload(struct server_tls *tls, char *err, size_t err_size);

/* Frees tls; the server using it must be destroyed. NULL is a no-op. */
void server_tls_free(struct server_tls *tls);

#endif
