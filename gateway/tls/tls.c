#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/tls_files.h"


struct gw_tls_ctx {
	char *cert_file, *key_file;
	pthread_mutex_t lock;
	SSL_CTX *current; /* under lock; connections hold their own ref */
};

struct gw_tls_conn {
	SSL *ssl;
	int fd;
	bool wants_write;
};

/* ALPN: http/1.1 when the client offers it; otherwise no ALPN at all. */
static int select_alpn(SSL *ssl, const unsigned char **out,
		       unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	static const unsigned char http11[] = "http/1.1";

	(void)ssl;
	(void)arg;
	for (unsigned i = 0; i < inlen;) {
		unsigned n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == sizeof(http11) - 1 &&
		    memcmp(in + i + 1, http11, n) == 0) {
			*out = in + i + 1;
			*outlen = (unsigned char)n;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Puts the checked PEM chain and key into ctx. */
static int use_pem(SSL_CTX *ctx, const struct das_tls_pem *pem)
{
	BIO *bio = BIO_new_mem_buf(pem->cert, -1);
	BIO *kbio = BIO_new_mem_buf(pem->key, -1);
	X509 *x = NULL;
	EVP_PKEY *key = NULL;
	int result = -1;

	if (!bio || !kbio)
		goto out;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!x || SSL_CTX_use_certificate(ctx, x) != 1)
		goto out;
	X509_free(x);
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)))
		if (SSL_CTX_add0_chain_cert(ctx, x) != 1)
			goto out;
	key = PEM_read_bio_PrivateKey(kbio, NULL, NULL, NULL);
	if (!key || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto out;
	result = 0;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	BIO_free(bio);
	BIO_free(kbio);
	ERR_clear_error();
	return result;
}

static SSL_CTX *build(const struct gw_tls_ctx *t, char *err, size_t err_size)
{
	struct das_tls_pem pem;
	SSL_CTX *ctx;

	if (das_tls_pem_load(&pem, t->cert_file, t->key_file, NULL, err,
			     err_size) != 0)
		return NULL;
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, GW_TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set_ciphersuites(ctx, GW_TLS13_SUITES) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, GW_TLS_GROUPS) != 1) {
		snprintf(err, err_size, "OpenSSL refused the TLS settings");
		goto fail;
	}
	/* Clients that close without close_notify are ordinary for HTTP
	 * (framing says where a message ends): a plain end of stream. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_NO_COMPRESSION |
					 SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	if (use_pem(ctx, &pem) != 0) {
		snprintf(err, err_size, "OpenSSL refused the certificate %s",
			 t->cert_file);
		goto fail;
	}
	das_tls_pem_release(&pem);
	return ctx;
fail:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	das_tls_pem_release(&pem);
	return NULL;
}

struct gw_tls_ctx *gw_tls_ctx_new(const char *cert_file, const char *key_file,
				  char *err, size_t err_size)
{
	struct gw_tls_ctx *t;

	if (!cert_file || !*cert_file || !key_file || !*key_file) {
		snprintf(err, err_size, "HTTPS needs both --tls-cert and "
					"--tls-key");
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t || !(t->cert_file = strdup(cert_file)) ||
	    !(t->key_file = strdup(key_file))) {
		snprintf(err, err_size, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->current = build(t, err, err_size);
	if (!t->current) {
		pthread_mutex_destroy(&t->lock);
		goto fail;
	}
	return t;
fail:
	if (t) {
		free(t->cert_file);
		free(t->key_file);
		free(t);
	}
	return NULL;
}

int gw_tls_ctx_reload(struct gw_tls_ctx *t, char *err, size_t err_size)
{
	SSL_CTX *ctx = build(t, err, err_size), *old;

	if (!ctx)
		return -1;
	pthread_mutex_lock(&t->lock);
	old = t->current;
	t->current = ctx;
	pthread_mutex_unlock(&t->lock);
	SSL_CTX_free(old); /* freed once its last connection is gone */
	return 0;
}

void gw_tls_ctx_free(struct gw_tls_ctx *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->current);
	pthread_mutex_destroy(&t->lock);
	free(t->cert_file);
	free(t->key_file);
	free(t);
}

struct gw_tls_conn *gw_tls_conn_new(struct gw_tls_ctx *t, int fd)
{
	struct gw_tls_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	pthread_mutex_lock(&t->lock);
	c->ssl = SSL_new(t->current); /* takes a reference to the context */
	pthread_mutex_unlock(&t->lock);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		SSL_free(c->ssl);
		free(c);
		ERR_clear_error();
		return NULL;
	}
	SSL_set_accept_state(c->ssl);
	c->fd = fd;
	return c;
}

/*
 * Maps an OpenSSL result to the transport's: WANT_* -> EAGAIN (and for
 * what), a clean close -> 0, anything else -> -1 with an errno.
 */
static ssize_t outcome(struct gw_tls_conn *c, int rc)
{
	int e = SSL_get_error(c->ssl, rc);
	int saved = errno;

	ERR_clear_error();
	c->wants_write = false;
	switch (e) {
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		c->wants_write = true;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		errno = saved ? saved : ECONNRESET;
		return -1;
	default:
		errno = EPROTO;
		return -1;
	}
}

int gw_tls_handshake(struct gw_tls_conn *c)
{
	int rc;

	ERR_clear_error();
	rc = SSL_do_handshake(c->ssl);
	if (rc == 1) {
		c->wants_write = false;
		return 0;
	}
	if (outcome(c, rc) < 0 && errno == EAGAIN)
		return 1;
	return -1;
}

ssize_t gw_tls_read(struct gw_tls_conn *c, void *buf, size_t len)
{
	size_t n = 0;
	int rc;

	ERR_clear_error();
	rc = SSL_read_ex(c->ssl, buf, len, &n);
	if (rc == 1) {
		c->wants_write = false;
		return (ssize_t)n;
	}
	return outcome(c, rc);
}

ssize_t gw_tls_write(struct gw_tls_conn *c, const void *buf, size_t len)
{
	size_t n = 0;
	int rc;

	if (len == 0)
		return 0;
	ERR_clear_error();
	rc = SSL_write_ex(c->ssl, buf, len, &n);
	if (rc == 1) {
		c->wants_write = false;
		return (ssize_t)n;
	}
	if (outcome(c, rc) == 0) {
		errno = EPIPE; /* the peer closed its side of TLS */
		return -1;
	}
	return -1;
}

bool gw_tls_wants_write(const struct gw_tls_conn *c)
{
	return c->wants_write;
}

void gw_tls_shutdown(struct gw_tls_conn *c)
{
	ERR_clear_error();
	if (SSL_is_init_finished(c->ssl))
		(void)SSL_shutdown(c->ssl); /* one try: close_notify out */
	ERR_clear_error();
	shutdown(c->fd, SHUT_WR);
}

void gw_tls_conn_free(struct gw_tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	free(c);
}

const char *gw_tls_version(const struct gw_tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *gw_tls_cipher(const struct gw_tls_conn *c)
{
	return SSL_get_cipher_name(c->ssl);
}
