/*
 * Certificate and key files for TLS, read and checked with OpenSSL before
 * they are handed to gRPC or to an SSL_CTX: a file that does not parse, a
 * key that does not belong to its certificate, or an expired certificate is
 * refused here with a reason a person can act on, instead of every
 * handshake failing later. Used by the server, the gateway and the client.
 */
#ifndef DAS_COMMON_TLS_FILES_H
#define DAS_COMMON_TLS_FILES_H

#include <stddef.h>

#define DAS_TLS_MAX_FILE (256 * 1024)

/* PEM text read from files; every member malloc'd and NUL-terminated. */
struct das_tls_pem {
	char *cert; /* certificate chain, leaf first; NULL when not asked */
	char *key;  /* private key of the leaf; NULL when not asked */
	char *ca;   /* trusted CA certificates; NULL when not asked */
};

/*
 * Reads cert_file + key_file (both or neither; NULL or "" = neither) and
 * ca_file (NULL or "" = none). The chain must hold at least one
 * certificate, the key must be an unencrypted private key matching the
 * first certificate, which must be within its validity period; the CA file
 * must hold at least one certificate. Returns 0 with out filled, or -1 with
 * a one-line reason in err (out then holds nothing).
 */
int das_tls_pem_load(struct das_tls_pem *out, const char *cert_file,
		     const char *key_file, const char *ca_file, char *err,
		     size_t err_size);

/* Frees the members (the key is wiped first). NULL is a no-op. */
void das_tls_pem_release(struct das_tls_pem *pem);

#endif
