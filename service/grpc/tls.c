#include "tls.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tls_files.h"

struct server_tls {
	char *cert_file, *key_file, *client_ca_file;
	pthread_mutex_t lock;
	/* Made by the last successful load, not yet taken by gRPC. */
	grpc_ssl_server_certificate_config *pending;
};

/* A gRPC configuration from checked files; NULL with a reason. */
static grpc_ssl_server_certificate_config *
load_config(const struct server_tls *tls, char *err, size_t err_size)
{
	struct das_tls_pem pem;
	grpc_ssl_server_certificate_config *cfg;
	grpc_ssl_pem_key_cert_pair pair;

	if (das_tls_pem_load(&pem, tls->cert_file, tls->key_file,
			     tls->client_ca_file, err, err_size) != 0)
		return NULL;
	pair.private_key = pem.key;
	pair.cert_chain = pem.cert;
	/*
	 * gRPC copies the strings. Its fetcher path insists on root
	 * certificates even when no client certificate is requested (it
	 * asserts and aborts otherwise); the server's own chain stands in
	 * then and is never used, since clients are not asked for one.
	 */
	cfg = grpc_ssl_server_certificate_config_create(
		pem.ca ? pem.ca : pem.cert, &pair, 1);
	das_tls_pem_release(&pem);
	if (!cfg)
		snprintf(err, err_size, "gRPC refused the certificate of %s",
			 tls->cert_file);
	return cfg;
}

/*
 * Called by gRPC before a handshake, on its own threads: hands over the
 * configuration a reload prepared, if any. gRPC owns what it receives; when
 * it cannot build a TLS context from it, it logs that and keeps the old one.
 */
static grpc_ssl_certificate_config_reload_status
fetch_config(void *user_data, grpc_ssl_server_certificate_config **config)
{
	struct server_tls *tls = user_data;
	grpc_ssl_certificate_config_reload_status status =
		GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;

	pthread_mutex_lock(&tls->lock);
	if (tls->pending) {
		*config = tls->pending;
		tls->pending = NULL;
		status = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
	}
	pthread_mutex_unlock(&tls->lock);
	return status;
}

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

struct server_tls *server_tls_new(const struct server_tls_files *files,
				  char *err, size_t err_size)
{
	struct server_tls *tls = calloc(1, sizeof(*tls));

	if (!tls) {
		snprintf(err, err_size, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&tls->lock, NULL);
	if (!files->cert_file || !*files->cert_file || !files->key_file ||
	    !*files->key_file) {
		snprintf(err, err_size,
			 "TLS needs both --tls-cert and --tls-key");
		goto fail;
	}
	tls->cert_file = strdup(files->cert_file);
	tls->key_file = strdup(files->key_file);
	tls->client_ca_file = dup_or_null(files->client_ca_file);
	if (!tls->cert_file || !tls->key_file ||
	    (files->client_ca_file && *files->client_ca_file &&
	     !tls->client_ca_file)) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	tls->pending = load_config(tls, err, err_size);
	if (!tls->pending)
		goto fail;
	return tls;
fail:
	server_tls_free(tls);
	return NULL;
}

grpc_server_credentials *server_tls_credentials(struct server_tls *tls)
{
	grpc_ssl_server_credentials_options *opt =
		grpc_ssl_server_credentials_create_options_using_config_fetcher(
			tls->client_ca_file
				? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
				: GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
			fetch_config, tls);

	return opt ? grpc_ssl_server_credentials_create_with_options(opt)
		   : NULL;
}

int server_tls_reload(struct server_tls *tls, char *err, size_t err_size)
{
	grpc_ssl_server_certificate_config *cfg, *old;

	cfg = load_config(tls, err, err_size);
	if (!cfg)
		return -1;
	pthread_mutex_lock(&tls->lock);
	old = tls->pending;
	tls->pending = cfg;
	pthread_mutex_unlock(&tls->lock);
	if (old)
		grpc_ssl_server_certificate_config_destroy(old);
	return 0;
}

void server_tls_free(struct server_tls *tls)
{
	if (!tls)
		return;
	if (tls->pending)
		grpc_ssl_server_certificate_config_destroy(tls->pending);
	pthread_mutex_destroy(&tls->lock);
	free(tls->cert_file);
	free(tls->key_file);
	free(tls->client_ca_file);
	free(tls);
}
