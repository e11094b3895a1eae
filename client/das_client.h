/*
 * A blocking gRPC client for the DeviceAssignment, Directory and Health
 * services over the gRPC C core: used by the CLI and the integration tests.
 * One das_client owns one channel; calls may be made from several threads
 * at once.
 */
#ifndef DAS_CLIENT_H
#define DAS_CLIENT_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "proto/rpc_methods.h"

struct das_client;

/* The outcome of one call. */
struct das_call_status {
	int code;          /* gRPC status code, 0 = OK */
	char message[512]; /* grpc-message, truncated */
	char reason[64];   /* ErrorInfo reason of our domain, or "" */
};

/*
 * Opens a channel to target ("127.0.0.1:50051", any gRPC target string).
 * Calls grpc_init() (balanced by das_client_free). NULL on failure.
 */
struct das_client *das_client_new(const char *target);

/* TLS to the server; NULL members are not used. */
struct das_client_tls {
	const char *ca_file;     /* CA certificates that sign the server's, PEM;
				    NULL = the system's roots */
	const char *cert_file;   /* client certificate for mTLS, PEM */
	const char *key_file;    /* its private key, PEM */
	const char *server_name; /* name checked in the server's certificate
				    and sent as SNI; NULL = the target's host */
};

/*
 * das_client_new over TLS (tls NULL = plaintext, as das_client_new). The
 * files are read and checked now. NULL with a one-line reason in err.
 */
struct das_client *das_client_new_tls(const char *target,
				      const struct das_client_tls *tls,
				      char *err, size_t err_size);
void das_client_free(struct das_client *c); /* NULL is a no-op */

/*
 * One unary call of method with request (a message of the method's request
 * type). token: the bearer token or NULL (no authorization metadata).
 * timeout_ms: the deadline. The call waits for the channel to become ready
 * within the deadline (wait-for-ready).
 *
 * Returns 0 when the call completed with any status (see st->code); on
 * OK, *response is the unpacked reply (free with
 * protobuf_c_message_free_unpacked(*response, NULL)). Returns -1 only on a
 * local failure (encoding, allocation), with st->message set.
 */
int das_client_call(struct das_client *c, enum das_rpc_method method,
		    const char *token, const ProtobufCMessage *request,
		    ProtobufCMessage **response, int timeout_ms,
		    struct das_call_status *st);

/*
 * Raw variant for tests of hostile input: sends the given bytes as the
 * request message and extra metadata (key/value pairs, n_md entries, may be
 * 0) instead of the authorization header. Response bytes are discarded.
 */
int das_client_call_raw(struct das_client *c, const char *path,
			const void *bytes, size_t len, const char *const *md,
			size_t n_md, int timeout_ms, struct das_call_status *st);

#endif
