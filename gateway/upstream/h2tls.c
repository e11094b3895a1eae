#include "h2tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "common/tls_files.h"
#include "gateway/tls/tls.h"

static const unsigned char alpn_h2[] = {2, 'h', '2'};

SSL_CTX *h2tls_ctx_new(const char *ca_file, const char *cert_file,
		       const char *key_file, char *err, size_t err_size)
{
	struct das_tls_pem pem;
	SSL_CTX *ctx;
	bool has_ca = ca_file && *ca_file;
	bool has_cert = cert_file && *cert_file;

	/* Checked with reasons a person can act on before OpenSSL sees them. */
	if (das_tls_pem_load(&pem, cert_file, key_file, ca_file, err,
			     err_size) != 0)
		return NULL;
	das_tls_pem_release(&pem);
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, err_size, "cannot create a TLS context");
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, GW_TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, GW_TLS13_SUITES) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, GW_TLS_GROUPS) != 1) {
		snprintf(err, err_size, "cannot set the TLS policy");
		goto fail;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
					 SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if ((has_ca ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
		    : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
		snprintf(err, err_size, "cannot load the CA certificates");
		goto fail;
	}
	if (has_cert &&
	    (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
	     SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) !=
		     1 ||
	     SSL_CTX_check_private_key(ctx) != 1)) {
		snprintf(err, err_size, "cannot use the client certificate");
		goto fail;
	}
	if (SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof(alpn_h2)) != 0) {
		snprintf(err, err_size, "cannot set ALPN");
		goto fail;
	}
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

SSL *h2tls_new(SSL_CTX *ctx, int fd, const char *server_name)
{
	SSL *ssl = SSL_new(ctx);
	unsigned char ip[16];
	bool is_ip = inet_pton(AF_INET, server_name, ip) == 1 ||
		     inet_pton(AF_INET6, server_name, ip) == 1;

	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1)
		goto fail;
	if (is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
						  server_name) != 1)
			goto fail;
	} else if (SSL_set1_host(ssl, server_name) != 1 ||
		   SSL_set_tlsext_host_name(ssl, server_name) != 1) {
		goto fail;
	}
	SSL_set_connect_state(ssl);
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

/* Maps an SSL_* result to the recv/send convention. */
static ssize_t io_result(SSL *ssl, int n)
{
	switch (SSL_get_error(ssl, n)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		ERR_clear_error();
		if (errno == 0)
			return 0; /* closed without close_notify */
		return -1;
	default:
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

int h2tls_handshake(SSL *ssl)
{
	const unsigned char *proto = NULL;
	unsigned int len = 0;
	int n = SSL_do_handshake(ssl);

	if (n != 1) {
		errno = 0;
		if (io_result(ssl, n) < 0 && errno == EAGAIN)
			return 1;
		return -1;
	}
	SSL_get0_alpn_selected(ssl, &proto, &len);
	if (len && (len != 2 || memcmp(proto, "h2", 2) != 0))
		return -1;
	return 0;
}

ssize_t h2tls_read(SSL *ssl, void *buf, size_t len)
{
	int n;

	errno = 0;
	n = SSL_read(ssl, buf, len > 1 << 30 ? 1 << 30 : (int)len);
	return n > 0 ? n : io_result(ssl, n);
}

ssize_t h2tls_write(SSL *ssl, const void *buf, size_t len)
{
	int n;

	errno = 0;
	n = SSL_write(ssl, buf, len > 1 << 30 ? 1 << 30 : (int)len);
	return n > 0 ? n : io_result(ssl, n);
}
