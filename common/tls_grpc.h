/*
 * gRPC channel credentials from certificate files, checked first by
 * das_tls_pem_load(). Used by the client library (the gateway's upstream
 * has its own OpenSSL client: gateway/upstream/h2tls.c).
 */
#ifndef DAS_COMMON_TLS_GRPC_H
#define DAS_COMMON_TLS_GRPC_H

#include <stddef.h>

#include <grpc/grpc_security.h>

/*
 * TLS credentials trusting ca_file (NULL or "" = the system roots) and,
 * when cert_file and key_file are given, presenting that client
 * certificate. Returns the credentials (release with
 * grpc_channel_credentials_release()), or NULL with a reason in err.
 */
grpc_channel_credentials *
das_tls_channel_credentials(const char *cert_file, const char *key_file,
			    const char *ca_file, char *err, size_t err_size);

#endif
