#include "tls_files.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static bool is_given(const char *s)
{
	return s && *s;
}

/* The whole file, NUL-terminated, at most DAS_TLS_MAX_FILE bytes. */
static char *read_file(const char *path, const char *what, char *err,
		       size_t err_size)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n;

	if (!f) {
		snprintf(err, err_size, "cannot open %s %s: %s", what, path,
			 strerror(errno));
		return NULL;
	}
	buf = malloc(DAS_TLS_MAX_FILE + 2);
	if (!buf) {
		snprintf(err, err_size, "out of memory reading %s", path);
		goto fail;
	}
	n = fread(buf, 1, DAS_TLS_MAX_FILE + 1, f);
	if (ferror(f)) {
		snprintf(err, err_size, "cannot read %s %s", what, path);
		goto fail;
	}
	if (n > DAS_TLS_MAX_FILE) {
		snprintf(err, err_size, "%s %s is larger than %d bytes", what,
			 path, DAS_TLS_MAX_FILE);
		goto fail;
	}
	if (memchr(buf, '\0', n)) {
		snprintf(err, err_size, "%s %s is not PEM text", what, path);
		goto fail;
	}
	buf[n] = '\0';
	fclose(f);
	return buf;
fail:
	fclose(f);
	if (buf) {
		OPENSSL_cleanse(buf, DAS_TLS_MAX_FILE + 2);
		free(buf);
	}
	return NULL;
}

/* Never prompt for a passphrase: an encrypted key is refused. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Counts the certificates of a PEM text; the first one goes to *first. */
static int count_certs(const char *pem, X509 **first)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int n = 0;

	if (!bio)
		return -1;
	while ((x = PEM_read_bio_X509(bio, NULL, no_password, NULL))) {
		if (n == 0 && first)
			*first = x;
		else
			X509_free(x);
		n++;
	}
	ERR_clear_error();
	BIO_free(bio);
	return n;
}

static int check_validity(X509 *cert, const char *path, char *err,
			  size_t err_size)
{
	if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
		snprintf(err, err_size,
			 "certificate %s is not valid yet (notBefore)", path);
		return -1;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
		snprintf(err, err_size, "certificate %s has expired", path);
		return -1;
	}
	return 0;
}

static int check_pair(const char *cert_pem, const char *key_pem,
		      const char *cert_file, const char *key_file, char *err,
		      size_t err_size)
{
	X509 *leaf = NULL;
	EVP_PKEY *key = NULL;
	BIO *bio = NULL;
	int result = -1;

	if (count_certs(cert_pem, &leaf) <= 0 || !leaf) {
		snprintf(err, err_size, "%s holds no PEM certificate",
			 cert_file);
		goto out;
	}
	if (check_validity(leaf, cert_file, err, err_size) != 0)
		goto out;
	bio = BIO_new_mem_buf(key_pem, -1);
	if (bio)
		key = PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL);
	if (!key) {
		snprintf(err, err_size,
			 "%s holds no unencrypted PEM private key", key_file);
		goto out;
	}
	if (X509_check_private_key(leaf, key) != 1) {
		snprintf(err, err_size,
			 "the key in %s does not belong to the certificate "
			 "in %s",
			 key_file, cert_file);
		goto out;
	}
	result = 0;
out:
	ERR_clear_error();
	EVP_PKEY_free(key);
	BIO_free(bio);
	X509_free(leaf);
	return result;
}

int das_tls_pem_load(struct das_tls_pem *out, const char *cert_file,
		     const char *key_file, const char *ca_file, char *err,
		     size_t err_size)
{
	struct das_tls_pem p = {0};

	memset(out, 0, sizeof(*out));
	if (is_given(cert_file) != is_given(key_file)) {
		snprintf(err, err_size,
			 "a certificate needs its key and a key its "
			 "certificate: give both files");
		return -1;
	}
	if (is_given(cert_file)) {
		p.cert = read_file(cert_file, "certificate", err, err_size);
		if (!p.cert)
			goto fail;
		p.key = read_file(key_file, "key", err, err_size);
		if (!p.key)
			goto fail;
		if (check_pair(p.cert, p.key, cert_file, key_file, err,
			       err_size) != 0)
			goto fail;
	}
	if (is_given(ca_file)) {
		p.ca = read_file(ca_file, "CA file", err, err_size);
		if (!p.ca)
			goto fail;
		if (count_certs(p.ca, NULL) <= 0) {
			snprintf(err, err_size, "%s holds no PEM certificate",
				 ca_file);
			goto fail;
		}
	}
	*out = p;
	return 0;
fail:
	das_tls_pem_release(&p);
	return -1;
}

void das_tls_pem_release(struct das_tls_pem *pem)
{
	if (!pem)
		return;
	if (pem->key) {
		OPENSSL_cleanse(pem->key, strlen(pem->key));
		free(pem->key);
	}
	free(pem->cert);
	free(pem->ca);
	memset(pem, 0, sizeof(*pem));
}
