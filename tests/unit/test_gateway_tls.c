/*
 * gateway/tls: the HTTPS transport over a non-blocking socketpair, driven
 * against an OpenSSL client. Certificates from scripts/dev-ca.sh in a
 * temporary directory. Handshake, ALPN and data both ways (1 MiB, through
 * EAGAIN and partial writes); TLS 1.1, non-ECDHE/non-AEAD suites and
 * plaintext refused; a client trusting another CA refuses us; reload: new
 * connections get the renewed certificate while an open one keeps working,
 * and a broken reload keeps the old certificate; close_notify and an
 * abrupt close read as the end of the stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "gateway/tls/tls.h"

static char dir[64], other[128], cmd[512];

struct pair {
	int fds[2];
	struct gw_tls_conn *server;
	SSL_CTX *cctx;
	SSL *client;
};

static void path(char *buf, size_t size, const char *d, const char *name)
{
	snprintf(buf, size, "%s/%s", d, name);
}

static int run_dev_ca(const char *d)
{
	snprintf(cmd, sizeof(cmd), "'%s' '%s' 2 >/dev/null", DAS_DEV_CA_SCRIPT,
		 d);
	return system(cmd);
}

static int group_setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_gateway_tls.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	path(other, sizeof(other), dir, "other");
	if (run_dev_ca(dir) != 0 || run_dev_ca(other) != 0)
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct gw_tls_ctx *server_ctx(void)
{
	char cert[160], key[160], err[256] = "";
	struct gw_tls_ctx *t;

	path(cert, sizeof(cert), dir, "gateway.pem");
	path(key, sizeof(key), dir, "gateway.key");
	t = gw_tls_ctx_new(cert, key, err, sizeof(err));
	if (!t)
		fail_msg("ctx: %s", err);
	return t;
}

/* A client trusting ca_dir's CA; max_version 0 = any; ciphers NULL = any. */
static void open_pair(struct pair *p, struct gw_tls_ctx *t, const char *ca_dir,
		      int min_version, int max_version, const char *ciphers)
{
	char ca[160];

	memset(p, 0, sizeof(*p));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fds), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(fcntl(p->fds[i], F_SETFL, O_NONBLOCK), 0);
	p->server = gw_tls_conn_new(t, p->fds[0]);
	assert_non_null(p->server);

	path(ca, sizeof(ca), ca_dir, "ca.pem");
	p->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->cctx);
	assert_int_equal(SSL_CTX_load_verify_locations(p->cctx, ca, NULL), 1);
	SSL_CTX_set_verify(p->cctx, SSL_VERIFY_PEER, NULL);
	if (min_version)
		SSL_CTX_set_min_proto_version(p->cctx, min_version);
	if (max_version)
		SSL_CTX_set_max_proto_version(p->cctx, max_version);
	if (ciphers)
		assert_int_equal(SSL_CTX_set_cipher_list(p->cctx, ciphers), 1);
	p->client = SSL_new(p->cctx);
	assert_non_null(p->client);
	assert_int_equal(SSL_set1_host(p->client, "localhost"), 1);
	SSL_set_tlsext_host_name(p->client, "localhost");
	static const unsigned char alpn[] = "\x02h2\x08http/1.1";
	SSL_set_alpn_protos(p->client, alpn, sizeof(alpn) - 1);
	SSL_set_fd(p->client, p->fds[1]);
	SSL_set_connect_state(p->client);
}

static void close_pair(struct pair *p)
{
	gw_tls_conn_free(p->server);
	SSL_free(p->client);
	SSL_CTX_free(p->cctx);
	close(p->fds[0]);
	close(p->fds[1]);
	ERR_clear_error();
}

/* Drives both sides; returns the server's last handshake result. */
static int handshake(struct pair *p, bool *is_client_ok)
{
	int s = 1, c = 0;

	for (int i = 0; i < 1000 && (s == 1 || c != 1); i++) {
		if (s == 1)
			s = gw_tls_handshake(p->server);
		if (c != 1) {
			c = SSL_do_handshake(p->client);
			if (c != 1) {
				int e = SSL_get_error(p->client, c);
				if (e != SSL_ERROR_WANT_READ &&
				    e != SSL_ERROR_WANT_WRITE)
					break;
			}
		}
		if (s == -1)
			break;
	}
	*is_client_ok = c == 1;
	ERR_clear_error();
	return s;
}

static void fingerprint(X509 *x, unsigned char md[32])
{
	unsigned n = 0;

	assert_non_null(x);
	assert_int_equal(X509_digest(x, EVP_sha256(), md, &n), 1);
	X509_free(x);
}

static void file_fingerprint(const char *name, unsigned char md[32])
{
	char p[160];
	FILE *f;

	path(p, sizeof(p), dir, name);
	f = fopen(p, "r");
	assert_non_null(f);
	fingerprint(PEM_read_X509(f, NULL, NULL, NULL), md);
	fclose(f);
}

/* One round trip of len bytes client -> server and back. */
static void echo(struct pair *p, size_t len)
{
	unsigned char *out = malloc(len), *in = malloc(len), *back = malloc(len);
	size_t sent = 0, got = 0, sent_back = 0, got_back = 0;

	assert_true(out && in && back);
	for (size_t i = 0; i < len; i++)
		out[i] = (unsigned char)(i * 131 + 7);
	for (int spins = 0; got_back < len && spins < 200000; spins++) {
		size_t n;
		ssize_t r;
		if (sent < len && SSL_write_ex(p->client, out + sent,
						len - sent, &n) == 1)
			sent += n;
		if (got < len) {
			r = gw_tls_read(p->server, in + got, len - got);
			if (r > 0)
				got += (size_t)r;
			else
				assert_int_equal(errno, EAGAIN);
		}
		if (sent_back < got) {
			r = gw_tls_write(p->server, in + sent_back,
					 got - sent_back);
			if (r > 0)
				sent_back += (size_t)r;
			else
				assert_int_equal(errno, EAGAIN);
		}
		if (SSL_read_ex(p->client, back + got_back, len - got_back,
				&n) == 1)
			got_back += n;
		ERR_clear_error();
	}
	assert_int_equal(got_back, len);
	assert_memory_equal(out, back, len);
	free(out);
	free(in);
	free(back);
}

static void test_handshake_alpn_and_data(void **state)
{
	struct gw_tls_ctx *t = server_ctx();
	struct pair p;
	bool is_client_ok;
	const unsigned char *alpn;
	unsigned alpn_len;

	(void)state;
	open_pair(&p, t, dir, 0, 0, NULL);
	assert_int_equal(handshake(&p, &is_client_ok), 0);
	assert_true(is_client_ok);
	assert_string_equal(gw_tls_version(p.server), "TLSv1.3");
	SSL_get0_alpn_selected(p.client, &alpn, &alpn_len);
	assert_int_equal(alpn_len, 8);
	assert_memory_equal(alpn, "http/1.1", 8);
	echo(&p, 100);
	echo(&p, 1024 * 1024); /* many records, EAGAIN on both sides */
	close_pair(&p);

	/* TLS 1.2: an ECDHE AEAD suite. */
	open_pair(&p, t, dir, 0, TLS1_2_VERSION, NULL);
	assert_int_equal(handshake(&p, &is_client_ok), 0);
	assert_string_equal(gw_tls_version(p.server), "TLSv1.2");
	assert_non_null(strstr(gw_tls_cipher(p.server), "ECDHE-"));
	assert_true(strstr(gw_tls_cipher(p.server), "GCM") ||
		    strstr(gw_tls_cipher(p.server), "CHACHA20"));
	echo(&p, 5000);
	close_pair(&p);
	gw_tls_ctx_free(t);
}

static void test_weak_or_wrong_clients_refused(void **state)
{
	struct gw_tls_ctx *t = server_ctx();
	struct pair p;
	bool is_client_ok;

	(void)state;
	/* TLS 1.1, allowed by this client. */
	open_pair(&p, t, dir, TLS1_1_VERSION, TLS1_1_VERSION,
		  "DEFAULT@SECLEVEL=0");
	assert_int_equal(handshake(&p, &is_client_ok), -1);
	assert_false(is_client_ok);
	close_pair(&p);
	/* TLS 1.2 without forward secrecy / with CBC. */
	open_pair(&p, t, dir, 0, TLS1_2_VERSION,
		  "AES128-SHA:AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA");
	assert_int_equal(handshake(&p, &is_client_ok), -1);
	close_pair(&p);
	/* A client that trusts another CA refuses our certificate. */
	open_pair(&p, t, other, 0, 0, NULL);
	handshake(&p, &is_client_ok);
	assert_false(is_client_ok);
	close_pair(&p);

	/* Plaintext HTTP where TLS is expected. */
	int fds[2];
	static const char plain[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	struct gw_tls_conn *c = gw_tls_conn_new(t, fds[0]);
	assert_non_null(c);
	assert_int_equal(write(fds[1], plain, sizeof(plain) - 1),
			 (ssize_t)sizeof(plain) - 1);
	assert_int_equal(gw_tls_handshake(c), -1);
	gw_tls_conn_free(c);
	close(fds[0]);
	close(fds[1]);
	gw_tls_ctx_free(t);
}

static void test_reload(void **state)
{
	struct gw_tls_ctx *t = server_ctx();
	struct pair old, renewed, kept;
	bool is_client_ok;
	unsigned char md_old[32], md_new[32], md[32];
	char err[256] = "", key[160], bad[160];

	(void)state;
	open_pair(&old, t, dir, 0, 0, NULL);
	assert_int_equal(handshake(&old, &is_client_ok), 0);
	fingerprint(SSL_get1_peer_certificate(old.client), md_old);
	file_fingerprint("gateway.pem", md);
	assert_memory_equal(md_old, md, 32);

	assert_int_equal(run_dev_ca(dir), 0); /* renew, same CA */
	assert_int_equal(gw_tls_ctx_reload(t, err, sizeof(err)), 0);
	open_pair(&renewed, t, dir, 0, 0, NULL);
	assert_int_equal(handshake(&renewed, &is_client_ok), 0);
	fingerprint(SSL_get1_peer_certificate(renewed.client), md_new);
	file_fingerprint("gateway.pem", md);
	assert_memory_equal(md_new, md, 32);
	assert_memory_not_equal(md_new, md_old, 32);
	/* The connection opened before the reload still works. */
	echo(&old, 70000);
	echo(&renewed, 70000);

	/* A key that is not the certificate's: refused, the current one
	 * stays. */
	path(key, sizeof(key), dir, "gateway.key");
	path(bad, sizeof(bad), dir, "client.key");
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", bad, key);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(gw_tls_ctx_reload(t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "does not belong"));
	open_pair(&kept, t, dir, 0, 0, NULL);
	assert_int_equal(handshake(&kept, &is_client_ok), 0);
	fingerprint(SSL_get1_peer_certificate(kept.client), md);
	assert_memory_equal(md, md_new, 32);

	close_pair(&old);
	close_pair(&renewed);
	close_pair(&kept);
	gw_tls_ctx_free(t);
	assert_int_equal(run_dev_ca(dir), 0);
}

static void test_end_of_stream(void **state)
{
	struct gw_tls_ctx *t = server_ctx();
	struct pair p;
	bool is_client_ok;
	char buf[64];

	(void)state;
	open_pair(&p, t, dir, 0, 0, NULL);
	assert_int_equal(handshake(&p, &is_client_ok), 0);
	assert_int_equal(gw_tls_read(p.server, buf, sizeof(buf)), -1);
	assert_int_equal(errno, EAGAIN);
	assert_false(gw_tls_wants_write(p.server));
	SSL_shutdown(p.client); /* close_notify */
	assert_int_equal(gw_tls_read(p.server, buf, sizeof(buf)), 0);
	gw_tls_shutdown(p.server);
	close_pair(&p);

	/* The client vanishes without close_notify. */
	open_pair(&p, t, dir, 0, 0, NULL);
	assert_int_equal(handshake(&p, &is_client_ok), 0);
	shutdown(p.fds[1], SHUT_WR);
	assert_int_equal(gw_tls_read(p.server, buf, sizeof(buf)), 0);
	close_pair(&p);
	gw_tls_ctx_free(t);

	/* Missing or mismatched files. */
	char err[256] = "", cert[160], key[160];
	path(cert, sizeof(cert), dir, "gateway.pem");
	path(key, sizeof(key), dir, "server.key");
	assert_null(gw_tls_ctx_new(cert, key, err, sizeof(err)));
	assert_non_null(strstr(err, "does not belong"));
	assert_null(gw_tls_ctx_new(cert, NULL, err, sizeof(err)));
	assert_null(gw_tls_ctx_new("/nonexistent.pem", key, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent.pem"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handshake_alpn_and_data),
		cmocka_unit_test(test_weak_or_wrong_clients_refused),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_end_of_stream),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
