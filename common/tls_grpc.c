#include "tls_grpc.h"

#include <stdio.h>

#include "tls_files.h"

grpc_channel_credentials *
das_tls_channel_credentials(const char *cert_file, const char *key_file,
			    const char *ca_file, char *err, size_t err_size)
{
	struct das_tls_pem pem;
	grpc_ssl_pem_key_cert_pair pair;
	grpc_channel_credentials *creds;

	if (das_tls_pem_load(&pem, cert_file, key_file, ca_file, err,
			     err_size) != 0)
		return NULL;
	pair.private_key = pem.key;
	pair.cert_chain = pem.cert;
	creds = grpc_ssl_credentials_create(pem.ca, pem.cert ? &pair : NULL,
					    NULL, NULL);
	das_tls_pem_release(&pem);
	if (!creds)
		snprintf(err, err_size, "gRPC refused the TLS settings");
	return creds;
}
