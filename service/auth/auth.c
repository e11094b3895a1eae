#include "auth.h"
#include "jwks.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>

#include "common/log.h"

/*
 * Threads: auth_verify runs concurrently on every worker thread with one
 * shared, read-only auth_config. That is safe because
 *  - libjwt 1.10 keeps no process-wide state (it has no allocator hooks
 *    yet; those came in 1.12): jwt_decode allocates its own jwt_t, copies
 *    the key into it and builds its HMAC/EVP/BIO objects per call;
 *  - OpenSSL 3 needs no locking callbacks;
 *  - jansson seeds its hash function once, thread-safely, and each parse
 *    has its own state; no json_t is shared between calls here;
 *  - this file has no static mutable data; the only shared mutable state
 *    is the config's key set pointer, read and swapped under its mutex.
 *    A verification takes a reference to the current key set and drops it
 *    when done, so a reload never frees keys a call is still using and
 *    never waits for calls (no reader/writer lock to starve the reload).
 * tests/unit/test_auth.c runs verifications from several threads at once.
 */

#define MAX_KEY_FILE (64 * 1024)

/* exp / nbf outside 1970..9999 are malformed; keeps the arithmetic safe. */
#define MAX_NUMERIC_DATE 253402300799LL

#define PEM_PUBLIC_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_PUBLIC_END "-----END PUBLIC KEY-----"

static void put_reason(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void put_reason(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!buf || size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

const char *auth_alg_name(enum auth_alg alg)
{
	switch (alg) {
	case AUTH_RS256:
		return "RS256";
	case AUTH_ES256:
		return "ES256";
	default:
		return "HS256";
	}
}

static const char *alg_name(enum auth_alg alg)
{
	return auth_alg_name(alg);
}

static jwt_alg_t alg_to_jwt(enum auth_alg alg)
{
	switch (alg) {
	case AUTH_RS256:
		return JWT_ALG_RS256;
	case AUTH_ES256:
		return JWT_ALG_ES256;
	default:
		return JWT_ALG_HS256;
	}
}

/* Exact, case-sensitive names only (libjwt's own parse ignores case). */
static int alg_from_name(const char *name, enum auth_alg *out)
{
	static const enum auth_alg all[] = {AUTH_HS256, AUTH_RS256,
					    AUTH_ES256};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(name, auth_alg_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	return -1;
}

/* memmem for a NUL-free needle, without relying on _GNU_SOURCE. */
static bool contains(const unsigned char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; n <= len && i <= len - n; i++)
		if (memcmp(hay + i, needle, n) == 0)
			return true;
	return false;
}

int auth_read_key_file(const char *path, bool is_secret, unsigned char **out,
		       size_t *len, char *err, size_t err_size)
{
	const char *what = is_secret ? "secret file" : "key file";
	unsigned char *buf = NULL;
	size_t n = 0;
	FILE *f = NULL;
	int result = -1;

	if (!path || !*path) {
		put_reason(err, err_size, "no %s given", what);
		goto out;
	}
	f = fopen(path, "rb");
	if (!f) {
		put_reason(err, err_size, "cannot open %s %s: %s", what, path,
			   strerror(errno));
		goto out;
	}
	/* One byte more than allowed, to tell "exactly 64 KiB" from more. */
	buf = malloc(MAX_KEY_FILE + 2);
	if (!buf) {
		put_reason(err, err_size, "out of memory reading %s", path);
		goto out;
	}
	n = fread(buf, 1, MAX_KEY_FILE + 1, f);
	if (ferror(f)) {
		put_reason(err, err_size, "cannot read %s %s", what, path);
		goto out;
	}
	if (n > MAX_KEY_FILE) {
		put_reason(err, err_size, "%s %s is larger than %d bytes", what,
			   path, MAX_KEY_FILE);
		goto out;
	}
	if (is_secret && n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	if (n == 0) {
		put_reason(err, err_size, "%s %s is empty", what, path);
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	result = 0;
out:
	if (f)
		fclose(f);
	if (buf) {
		explicit_bzero(buf, MAX_KEY_FILE + 2);
		free(buf);
	}
	return result;
}

/*
 * libjwt 1.10 reads the verification key with PEM_read_bio_PUBKEY, which
 * takes only the SubjectPublicKeyInfo form; anything else would make every
 * token fail at run time, so it is refused at start-up instead.
 */
static int check_public_pem(const unsigned char *key, size_t len,
			    const char *path, char *err, size_t err_size)
{
	if (memchr(key, '\0', len)) {
		put_reason(err, err_size, "%s is not a PEM file", path);
		return -1;
	}
	if (contains(key, len, "PRIVATE KEY")) {
		put_reason(err, err_size,
			   "%s holds a private key; give the RS256 public key",
			   path);
		return -1;
	}
	if (!contains(key, len, PEM_PUBLIC_BEGIN) ||
	    !contains(key, len, PEM_PUBLIC_END)) {
		put_reason(err, err_size,
			   "%s is not a PEM public key (expected \"%s\")", path,
			   PEM_PUBLIC_BEGIN);
		return -1;
	}
	return 0;
}

static bool is_given(const char *s)
{
	return s && *s;
}

struct auth_keyset {
	unsigned refs;     /* the config's own + verifications in flight */
	bool is_by_kid;    /* a JWKS: tokens' kid picks the key */
	size_t n;
	struct auth_jwk *keys;
};

static void keyset_free(struct auth_keyset *ks)
{
	if (!ks)
		return;
	auth_jwks_free(ks->keys, ks->n);
	free(ks);
}

static struct auth_keyset *keyset_one(enum auth_alg alg, unsigned char *key,
				      size_t key_len)
{
	struct auth_keyset *ks = calloc(1, sizeof(*ks));

	if (!ks || !(ks->keys = calloc(1, sizeof(*ks->keys)))) {
		free(ks);
		return NULL;
	}
	ks->n = 1;
	ks->keys[0].alg = alg;
	ks->keys[0].key = key;
	ks->keys[0].key_len = key_len;
	return ks;
}

/* Reads the keys of src into a new key set (refs 1), or NULL and err. */
static struct auth_keyset *keyset_load(const struct auth_sources *src,
				       char *err, size_t err_size)
{
	struct auth_keyset *ks = NULL;
	unsigned char *key = NULL;
	size_t key_len = 0;
	int given = is_given(src->hs256_secret_file) +
		    is_given(src->rs256_public_key) + is_given(src->jwks_file);

	if (given != 1) {
		put_reason(err, err_size, "%s",
			   given ? "give only one of --jwt-hs256-secret-file, "
				   "--jwt-rs256-public-key and --jwt-jwks-file"
				 : "no JWT key: give --jwt-hs256-secret-file, "
				   "--jwt-rs256-public-key or --jwt-jwks-file");
		return NULL;
	}
	if (is_given(src->hs256_secret_file)) {
		if (auth_read_key_file(src->hs256_secret_file, true, &key,
				       &key_len, err, err_size) != 0)
			return NULL;
		ks = keyset_one(AUTH_HS256, key, key_len);
	} else if (is_given(src->rs256_public_key)) {
		if (auth_read_key_file(src->rs256_public_key, false, &key,
				       &key_len, err, err_size) != 0)
			return NULL;
		if (check_public_pem(key, key_len, src->rs256_public_key, err,
				     err_size) != 0) {
			free(key);
			return NULL;
		}
		ks = keyset_one(AUTH_RS256, key, key_len);
	} else {
		struct auth_jwk *keys;
		size_t n;
		if (auth_read_key_file(src->jwks_file, false, &key, &key_len,
				       err, err_size) != 0)
			return NULL;
		if (auth_jwks_parse(key, key_len, src->jwks_file, &keys, &n,
				    err, err_size) != 0) {
			explicit_bzero(key, key_len);
			free(key);
			return NULL;
		}
		explicit_bzero(key, key_len);
		free(key);
		key = NULL;
		ks = calloc(1, sizeof(*ks));
		if (!ks) {
			auth_jwks_free(keys, n);
		} else {
			ks->keys = keys;
			ks->n = n;
			ks->is_by_kid = true;
		}
	}
	if (!ks) {
		if (key) {
			explicit_bzero(key, key_len);
			free(key);
		}
		put_reason(err, err_size, "out of memory");
		return NULL;
	}
	ks->refs = 1;
	return ks;
}

static void keyset_unref(const struct auth_config *cfg,
			 struct auth_keyset *ks)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&cfg->lock;
	bool is_last;

	pthread_mutex_lock(lock);
	is_last = --ks->refs == 0;
	pthread_mutex_unlock(lock);
	if (is_last)
		keyset_free(ks);
}

/* The current key set with a reference taken; NULL when none. */
static struct auth_keyset *keyset_get(const struct auth_config *cfg)
{
	pthread_mutex_t *lock = (pthread_mutex_t *)&cfg->lock;
	struct auth_keyset *ks;

	pthread_mutex_lock(lock);
	ks = cfg->keys;
	if (ks)
		ks->refs++;
	pthread_mutex_unlock(lock);
	return ks;
}

static char *dup_given(const char *s, bool *is_oom)
{
	char *d;

	if (!is_given(s))
		return NULL;
	d = strdup(s);
	if (!d)
		*is_oom = true;
	return d;
}

static void sources_release(struct auth_sources *f)
{
	free((char *)f->hs256_secret_file);
	free((char *)f->rs256_public_key);
	free((char *)f->jwks_file);
	memset(f, 0, sizeof(*f));
}

static void log_keys(const struct auth_keyset *ks, const char *what)
{
	for (size_t i = 0; i < ks->n; i++)
		das_log(DAS_LOG_INFO, "JWT %s key %s%s%s", what,
			alg_name(ks->keys[i].alg),
			ks->keys[i].kid ? " kid=" : "",
			ks->keys[i].kid ? ks->keys[i].kid : "");
}

int auth_config_load_sources(struct auth_config *cfg,
			     const struct auth_sources *src, char *err,
			     size_t err_size)
{
	bool is_oom = false;

	memset(cfg, 0, sizeof(*cfg));
	cfg->keys = keyset_load(src, err, err_size);
	if (!cfg->keys)
		goto fail;
	cfg->files.hs256_secret_file = dup_given(src->hs256_secret_file,
						 &is_oom);
	cfg->files.rs256_public_key = dup_given(src->rs256_public_key, &is_oom);
	cfg->files.jwks_file = dup_given(src->jwks_file, &is_oom);
	cfg->issuer = dup_given(src->issuer, &is_oom);
	cfg->audience = dup_given(src->audience, &is_oom);
	if (is_oom) {
		put_reason(err, err_size, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&cfg->lock, NULL);
	if (cfg->keys->is_by_kid)
		log_keys(cfg->keys, "loaded");
	return 0;
fail:
	keyset_free(cfg->keys);
	sources_release(&cfg->files);
	free(cfg->issuer);
	free(cfg->audience);
	memset(cfg, 0, sizeof(*cfg));
	return -1;
}

int auth_config_load(struct auth_config *cfg, const char *hs256_secret_file,
		     const char *rs256_public_key, const char *issuer,
		     const char *audience, char *err, size_t err_size)
{
	struct auth_sources src = {
		.hs256_secret_file = hs256_secret_file,
		.rs256_public_key = rs256_public_key,
		.issuer = issuer,
		.audience = audience,
	};

	return auth_config_load_sources(cfg, &src, err, err_size);
}

int auth_config_set_key(struct auth_config *cfg, enum auth_alg alg,
			const unsigned char *key, size_t key_len, char *err,
			size_t err_size)
{
	unsigned char *copy;

	memset(cfg, 0, sizeof(*cfg));
	if (!key || key_len == 0 || key_len > MAX_KEY_FILE ||
	    !(copy = malloc(key_len + 1))) {
		put_reason(err, err_size, "no key, or out of memory");
		return -1;
	}
	memcpy(copy, key, key_len);
	copy[key_len] = '\0';
	cfg->keys = keyset_one(alg, copy, key_len);
	if (!cfg->keys) {
		free(copy);
		put_reason(err, err_size, "out of memory");
		return -1;
	}
	cfg->keys->refs = 1;
	pthread_mutex_init(&cfg->lock, NULL);
	return 0;
}

int auth_config_reload(struct auth_config *cfg, char *err, size_t err_size)
{
	struct auth_keyset *ks, *old;

	if (!cfg->keys) {
		put_reason(err, err_size, "no keys were loaded");
		return -1;
	}
	if (!is_given(cfg->files.hs256_secret_file) &&
	    !is_given(cfg->files.rs256_public_key) &&
	    !is_given(cfg->files.jwks_file)) {
		put_reason(err, err_size, "keys given in memory: no file");
		return -1;
	}
	ks = keyset_load(&cfg->files, err, err_size);
	if (!ks)
		return -1;
	pthread_mutex_lock(&cfg->lock);
	old = cfg->keys;
	cfg->keys = ks;
	pthread_mutex_unlock(&cfg->lock);
	keyset_unref(cfg, old);
	log_keys(ks, "reloaded");
	return 0;
}

size_t auth_config_keys(const struct auth_config *cfg,
			struct auth_key_info *out, size_t max)
{
	struct auth_keyset *ks = keyset_get(cfg);
	size_t n;

	if (!ks)
		return 0;
	n = ks->n;
	for (size_t i = 0; i < n && i < max; i++) {
		snprintf(out[i].kid, sizeof(out[i].kid), "%s",
			 ks->keys[i].kid ? ks->keys[i].kid : "");
		out[i].alg = ks->keys[i].alg;
		out[i].key_len = ks->keys[i].key_len;
	}
	keyset_unref(cfg, ks);
	return n;
}

void auth_config_release(struct auth_config *cfg)
{
	if (!cfg)
		return;
	if (cfg->keys) {
		keyset_free(cfg->keys);
		pthread_mutex_destroy(&cfg->lock);
	}
	sources_release(&cfg->files);
	free(cfg->issuer);
	free(cfg->audience);
	memset(cfg, 0, sizeof(*cfg));
}

/* ---- verification ---------------------------------------------------- */

static bool is_b64url(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '-' ? 62 : 63;
}

/*
 * Strict unpadded base64url (the JWS compact form). Returns the decoded
 * length, or -1 when len is impossible or out is too small. Characters
 * were checked by the caller.
 */
static long b64url_decode(const char *in, size_t len, unsigned char *out,
			  size_t out_size)
{
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;

	if (len % 4 == 1 || (len / 4) * 3 + 2 > out_size)
		return -1;
	for (size_t i = 0; i < len; i++) {
		acc = (acc << 6) | (unsigned)b64url_value((unsigned char)in[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return (long)o;
}

/*
 * Splits "Bearer <jwt>" (RFC 7235: scheme case-insensitive, then one or
 * more spaces) and checks that the credentials have the shape of a JWS in
 * compact form: three non-empty base64url segments. Trailing optional
 * whitespace (spaces and tabs, RFC 9110 OWS) is not part of the value and
 * is dropped, on the gRPC face as HTTP does on the REST face. Anything else
 * - other schemes, tabs inside, padding, NUL bytes - is refused before
 * libjwt sees it, because libjwt 1.10's decoder skips characters it does
 * not know instead of rejecting them.
 */
static int split_bearer(const char *value, size_t len, const char **token,
			size_t *token_len, size_t *head_len, char *why,
			size_t why_size)
{
	static const char scheme[] = "Bearer";
	const size_t scheme_len = sizeof(scheme) - 1;
	size_t i, dots = 0, seg = 0;

	if (!value || len == 0) {
		put_reason(why, why_size, "no Authorization value");
		return -1;
	}
	if (len > AUTH_MAX_TOKEN) {
		put_reason(why, why_size, "Authorization value too long");
		return -1;
	}
	while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
		len--;
	if (len <= scheme_len || strncasecmp(value, scheme, scheme_len) != 0 ||
	    value[scheme_len] != ' ') {
		put_reason(why, why_size, "not a Bearer credential");
		return -1;
	}
	for (i = scheme_len; i < len && value[i] == ' '; i++)
		;
	*token = value + i;
	*token_len = len - i;
	*head_len = 0;
	for (; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c == '.') {
			if (seg == 0 || dots == 2)
				break;
			if (dots == 0)
				*head_len = seg;
			dots++;
			seg = 0;
		} else if (is_b64url(c)) {
			seg++;
		} else {
			break;
		}
	}
	if (i != len || dots != 2 || seg == 0) {
		put_reason(why, why_size, "malformed bearer token");
		return -1;
	}
	return 0;
}

/*
 * The header's alg and kid, read by us before libjwt is given any key: the
 * alg picks (with the kid) the key, and a token whose alg is not exactly
 * that key's (e.g. "none", or HS256 signed with an RS256 or ES256 public
 * key PEM as the HMAC secret) never reaches signature verification.
 * libjwt compares alg names case-insensitively; this does not.
 * jwt_get_alg is checked again after decoding.
 */
static int read_header(const char *head, size_t head_len, enum auth_alg *alg,
		       char *kid, size_t kid_size, char *why, size_t why_size)
{
	unsigned char buf[AUTH_MAX_TOKEN];
	json_t *hdr = NULL, *a, *k;
	long n;
	int result = -1;

	kid[0] = '\0';
	n = b64url_decode(head, head_len, buf, sizeof(buf));
	if (n <= 0) {
		put_reason(why, why_size, "malformed token header");
		goto out;
	}
	hdr = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES,
			 NULL);
	if (!json_is_object(hdr)) {
		put_reason(why, why_size, "malformed token header");
		goto out;
	}
	a = json_object_get(hdr, "alg");
	if (!json_is_string(a) || alg_from_name(json_string_value(a), alg)) {
		put_reason(why, why_size, "token alg is not RS256, ES256 or "
			   "HS256");
		goto out;
	}
	/* RFC 7515 section 4.1.11: a token whose crit names an extension the
	 * recipient does not understand must be rejected. We understand
	 * none, so any crit (well-formed or not) is refused. */
	if (json_object_get(hdr, "crit")) {
		put_reason(why, why_size,
			   "token header has crit (no extension is understood)");
		goto out;
	}
	k = json_object_get(hdr, "kid");
	if (k) {
		if (!json_is_string(k) || json_string_length(k) == 0 ||
		    json_string_length(k) >= kid_size) {
			put_reason(why, why_size, "malformed token kid");
			goto out;
		}
		memcpy(kid, json_string_value(k), json_string_length(k) + 1);
	}
	result = 0;
out:
	json_decref(hdr);
	return result;
}

/*
 * The key a token is checked with. A JWKS key set is searched by kid, and
 * the token's alg must be the key's; a token without kid (or any token
 * against a single configured key, which has no kid) needs exactly one
 * key of its alg.
 */
static const struct auth_jwk *pick_key(const struct auth_keyset *ks,
				       enum auth_alg alg, const char *kid,
				       char *why, size_t why_size)
{
	const struct auth_jwk *found = NULL;
	size_t fits = 0;

	if (ks->is_by_kid && kid[0]) {
		for (size_t i = 0; i < ks->n; i++)
			if (strcmp(ks->keys[i].kid, kid) == 0)
				found = &ks->keys[i];
		if (!found) {
			put_reason(why, why_size, "no key with the token's kid");
			return NULL;
		}
		if (found->alg != alg) {
			put_reason(why, why_size,
				   "token alg %s is not its key's alg %s",
				   alg_name(alg), alg_name(found->alg));
			return NULL;
		}
		return found;
	}
	for (size_t i = 0; i < ks->n; i++)
		if (ks->keys[i].alg == alg) {
			found = &ks->keys[i];
			fits++;
		}
	if (fits == 1)
		return found;
	if (fits == 0 && ks->n == 1)
		put_reason(why, why_size, "token alg is not %s",
			   alg_name(ks->keys[0].alg));
	else if (fits == 0)
		put_reason(why, why_size, "no key for token alg %s",
			   alg_name(alg));
	else
		put_reason(why, why_size,
			   "token has no kid and %zu keys have alg %s", fits,
			   alg_name(alg));
	return NULL;
}

static int get_date(json_t *claims, const char *name, bool is_required,
		    bool *is_present, int64_t *out, char *why, size_t why_size)
{
	json_t *v = json_object_get(claims, name);
	json_int_t t;

	*is_present = v != NULL;
	if (!v) {
		if (is_required)
			put_reason(why, why_size, "token has no %s", name);
		return is_required ? -1 : 0;
	}
	if (!json_is_integer(v)) {
		put_reason(why, why_size, "token %s is not an integer", name);
		return -1;
	}
	t = json_integer_value(v);
	if (t < 0 || t > MAX_NUMERIC_DATE) {
		put_reason(why, why_size, "token %s out of range", name);
		return -1;
	}
	*out = (int64_t)t;
	return 0;
}

static int check_times(json_t *claims, int64_t now, char *why,
		       size_t why_size)
{
	int64_t exp = 0, nbf = 0;
	bool has_exp, has_nbf;

	if (get_date(claims, "exp", true, &has_exp, &exp, why, why_size) != 0 ||
	    get_date(claims, "nbf", false, &has_nbf, &nbf, why, why_size) != 0)
		return -1;
	/* exp and nbf are bounded above, so these sums cannot overflow. */
	if (exp + AUTH_LEEWAY_SECONDS <= now) {
		put_reason(why, why_size, "token expired");
		return -1;
	}
	if (has_nbf && now < nbf - AUTH_LEEWAY_SECONDS) {
		put_reason(why, why_size, "token not yet valid");
		return -1;
	}
	return 0;
}

static int check_iss_aud(const struct auth_config *cfg, json_t *claims,
			 char *why, size_t why_size)
{
	json_t *iss, *aud;
	bool is_aud_ok = false;

	if (cfg->issuer) {
		iss = json_object_get(claims, "iss");
		if (!json_is_string(iss) ||
		    strcmp(json_string_value(iss), cfg->issuer) != 0) {
			put_reason(why, why_size, "wrong issuer");
			return -1;
		}
	}
	if (!cfg->audience)
		return 0;
	aud = json_object_get(claims, "aud");
	if (json_is_string(aud)) {
		is_aud_ok = strcmp(json_string_value(aud), cfg->audience) == 0;
	} else if (json_is_array(aud)) {
		size_t i;
		json_t *a;
		/* RFC 7519: an array of strings; anything else is malformed. */
		json_array_foreach(aud, i, a) {
			if (!json_is_string(a)) {
				put_reason(why, why_size, "malformed aud");
				return -1;
			}
			if (strcmp(json_string_value(a), cfg->audience) == 0)
				is_aud_ok = true;
		}
	}
	if (!is_aud_ok) {
		put_reason(why, why_size, "wrong audience");
		return -1;
	}
	return 0;
}

/*
 * sub is the actor written to the ledger and the logs. A sub longer than
 * DOMAIN_SUB_SIZE - 1 is refused rather than truncated (two actors must
 * never collapse into one), and so is one with control characters (log
 * and ledger injection). jansson has already guaranteed UTF-8 without NUL.
 */
static int take_sub(json_t *claims, struct domain_principal *who, char *why,
		    size_t why_size)
{
	json_t *sub = json_object_get(claims, "sub");
	size_t n;
	const char *s;

	if (!json_is_string(sub)) {
		put_reason(why, why_size, "token has no string sub");
		return -1;
	}
	s = json_string_value(sub);
	n = json_string_length(sub);
	if (n == 0 || n >= DOMAIN_SUB_SIZE) {
		put_reason(why, why_size, "token sub empty or too long");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			put_reason(why, why_size, "token sub has control chars");
			return -1;
		}
	}
	memcpy(who->sub, s, n);
	who->sub[n] = '\0';
	return 0;
}

/*
 * tenants: absent means the token covers no tenant (authorization answers
 * 403 later, with the right status, instead of 401 here). When present it
 * must be an array of at most DOMAIN_MAX_TENANTS entries, each "*" or a
 * GUID in any form das_guid_normalize accepts. An entry that is neither
 * makes the whole token malformed and it is refused: silently dropping it
 * would hide an issuer's mistake and grant less than the issuer meant in a
 * way nobody would notice. "*" sets is_all_tenants and is not stored in
 * tenants[], which holds canonical GUIDs only, without duplicates.
 */
static int take_tenants(json_t *claims, struct domain_principal *who,
			char *why, size_t why_size)
{
	json_t *tenants = json_object_get(claims, "tenants");
	json_t *t;
	size_t i;

	if (!tenants)
		return 0;
	if (!json_is_array(tenants)) {
		put_reason(why, why_size, "tenants is not an array");
		return -1;
	}
	if (json_array_size(tenants) > DOMAIN_MAX_TENANTS) {
		put_reason(why, why_size, "more than %d tenants",
			   DOMAIN_MAX_TENANTS);
		return -1;
	}
	json_array_foreach(tenants, i, t) {
		char guid[DAS_GUID_SIZE];
		bool is_dup = false;

		if (!json_is_string(t)) {
			put_reason(why, why_size, "tenants[%zu] not a string",
				   i);
			return -1;
		}
		if (strcmp(json_string_value(t), "*") == 0) {
			who->is_all_tenants = true;
			continue;
		}
		if (das_guid_normalize(json_string_value(t),
				       json_string_length(t), guid) != 0) {
			put_reason(why, why_size, "tenants[%zu] not a GUID", i);
			return -1;
		}
		for (size_t k = 0; k < who->n_tenants && !is_dup; k++)
			is_dup = strcmp(who->tenants[k], guid) == 0;
		if (!is_dup)
			memcpy(who->tenants[who->n_tenants++], guid,
			       DAS_GUID_SIZE);
	}
	return 0;
}

/*
 * scope: RFC 6749 style, space-separated. Absent = no scopes; a scope we
 * do not know is ignored (tokens from a shared issuer carry others' scopes);
 * a scope claim that is not a string is refused as malformed.
 */
static int take_scopes(json_t *claims, struct domain_principal *who,
		       char *why, size_t why_size)
{
	static const struct {
		const char *name;
		unsigned bit;
	} known[] = {
		{"devices:assign", DOMAIN_SCOPE_ASSIGN},
		{"directory:admin", DOMAIN_SCOPE_DIRECTORY},
		{"ledger:read", DOMAIN_SCOPE_LEDGER},
	};
	json_t *scope = json_object_get(claims, "scope");
	const char *s, *end;

	if (!scope)
		return 0;
	if (!json_is_string(scope)) {
		put_reason(why, why_size, "scope is not a string");
		return -1;
	}
	s = json_string_value(scope);
	end = s + json_string_length(scope);
	while (s < end) {
		const char *sp = memchr(s, ' ', (size_t)(end - s));
		size_t n = sp ? (size_t)(sp - s) : (size_t)(end - s);

		for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (strlen(known[k].name) == n &&
			    memcmp(known[k].name, s, n) == 0)
				who->scopes |= known[k].bit;
		s += n + (sp ? 1 : 0);
	}
	return 0;
}

/*
 * Whether the claims segment of a signed token decodes to text without a
 * NUL byte. libjwt 1.10 reads the decoded claims as a C string, so a NUL
 * would end them early and whatever follows it (anything the signer put
 * there) would be dropped unread: "{...}\0junk" verified as "{...}". The
 * claims must be one JSON object, nothing after it (RFC 7519 section 7.2).
 */
static bool claims_are_text(const char *tok, size_t tok_len, size_t head_len)
{
	unsigned char buf[AUTH_MAX_TOKEN];
	const char *payload = tok + head_len + 1;
	const char *dot = memchr(payload, '.', tok_len - head_len - 1);
	long n = dot ? b64url_decode(payload, (size_t)(dot - payload), buf,
				     sizeof(buf))
		     : -1;
	bool is_text = n > 0 && !memchr(buf, '\0', (size_t)n);

	explicit_bzero(buf, sizeof(buf));
	return is_text;
}

/*
 * The token (tok_len bytes, its header head_len of them) decoded by libjwt
 * with the one key that may sign it, or NULL with a reason. The caller
 * frees the result with jwt_free.
 */
static jwt_t *decode_signed(const struct auth_keyset *ks, const char *tok,
			    size_t tok_len, size_t head_len, char *why,
			    size_t why_size)
{
	char token[AUTH_MAX_TOKEN + 1];
	char kid[AUTH_JWKS_MAX_KID + 1];
	const struct auth_jwk *key;
	enum auth_alg alg;
	jwt_t *jwt = NULL, *result = NULL;

	if (read_header(tok, head_len, &alg, kid, sizeof(kid), why,
			why_size) != 0)
		return NULL;
	key = pick_key(ks, alg, kid, why, why_size);
	if (!key)
		return NULL;
	/* Never let libjwt run without a key: it would skip the signature. */
	if (!key->key || key->key_len == 0 || key->key_len > INT_MAX) {
		put_reason(why, why_size, "no verification key configured");
		return NULL;
	}
	memcpy(token, tok, tok_len);
	token[tok_len] = '\0';
	if (jwt_decode(&jwt, token, key->key, (int)key->key_len) != 0 || !jwt) {
		put_reason(why, why_size, "bad signature or malformed token");
		goto out;
	}
	if (jwt_get_alg(jwt) != alg_to_jwt(key->alg)) {
		put_reason(why, why_size, "token alg is not %s",
			   alg_name(key->alg));
		goto out;
	}
	if (!claims_are_text(tok, tok_len, head_len)) {
		put_reason(why, why_size, "token claims are not one JSON object");
		goto out;
	}
	result = jwt;
	jwt = NULL;
out:
	jwt_free(jwt);
	explicit_bzero(token, sizeof(token));
	return result;
}

/*
 * The claims of a verified token as a JSON object (caller decrefs), or
 * NULL with a reason. They are read back as JSON so their types can be
 * checked exactly; libjwt 1.10's typed getters cannot tell a missing claim
 * from one of the wrong type.
 */
static json_t *read_claims(jwt_t *jwt, char *why, size_t why_size)
{
	char *grants_text = jwt_get_grants_json(jwt, NULL);
	json_t *claims = NULL;

	if (grants_text)
		claims = json_loads(grants_text, 0, NULL);
	free(grants_text);
	if (!json_is_object(claims)) {
		put_reason(why, why_size, "token claims are not an object");
		json_decref(claims);
		return NULL;
	}
	return claims;
}

/* Checks the claims and fills *who from them; 0, or -1 with a reason. */
static int take_principal(const struct auth_config *cfg, json_t *claims,
			  int64_t now, struct domain_principal *who, char *why,
			  size_t why_size)
{
	struct domain_principal p;

	if (check_times(claims, now, why, why_size) != 0 ||
	    check_iss_aud(cfg, claims, why, why_size) != 0)
		return -1;
	memset(&p, 0, sizeof(p));
	if (take_sub(claims, &p, why, why_size) != 0 ||
	    take_tenants(claims, &p, why, why_size) != 0 ||
	    take_scopes(claims, &p, why, why_size) != 0)
		return -1;
	*who = p;
	return 0;
}

int auth_verify(const struct auth_config *cfg, const char *value, size_t len,
		int64_t now, struct domain_principal *who, char *why,
		size_t why_size)
{
	const char *tok;
	size_t tok_len, head_len;
	struct auth_keyset *ks = NULL;
	jwt_t *jwt = NULL;
	json_t *claims = NULL;
	int result = -1;

	put_reason(why, why_size, "ok");
	if (!cfg || !(ks = keyset_get(cfg))) {
		put_reason(why, why_size, "no verification key configured");
		goto out;
	}
	if (split_bearer(value, len, &tok, &tok_len, &head_len, why,
			 why_size) != 0)
		goto out;
	jwt = decode_signed(ks, tok, tok_len, head_len, why, why_size);
	if (!jwt)
		goto out;
	claims = read_claims(jwt, why, why_size);
	if (!claims ||
	    take_principal(cfg, claims, now, who, why, why_size) != 0)
		goto out;
	put_reason(why, why_size, "ok");
	result = 0;
out:
	if (ks)
		keyset_unref(cfg, ks);
	json_decref(claims);
	jwt_free(jwt);
	return result;
}

/* ---- minting ---------------------------------------------------------- */

static json_t *claims_json(const struct auth_claims *c)
{
	json_t *o = json_object(), *tenants = NULL;

	if (!o)
		return NULL;
	if (json_object_set_new(o, "sub", json_string(c->sub)) != 0 ||
	    json_object_set_new(o, "exp", json_integer(c->exp)) != 0)
		goto fail;
	if (c->iat && json_object_set_new(o, "iat", json_integer(c->iat)) != 0)
		goto fail;
	if (c->nbf && json_object_set_new(o, "nbf", json_integer(c->nbf)) != 0)
		goto fail;
	if (c->issuer &&
	    json_object_set_new(o, "iss", json_string(c->issuer)) != 0)
		goto fail;
	if (c->audience &&
	    json_object_set_new(o, "aud", json_string(c->audience)) != 0)
		goto fail;
	if (c->scope && *c->scope &&
	    json_object_set_new(o, "scope", json_string(c->scope)) != 0)
		goto fail;
	if (c->n_tenants > 0) {
		tenants = json_array();
		if (!tenants)
			goto fail;
		for (size_t i = 0; i < c->n_tenants; i++)
			if (!c->tenants[i] ||
			    json_array_append_new(tenants,
						  json_string(c->tenants[i])) != 0)
				goto fail;
		if (json_object_set_new(o, "tenants", tenants) != 0) {
			tenants = NULL; /* set_new consumed it */
			goto fail;
		}
		tenants = NULL;
	}
	return o;
fail:
	json_decref(tenants);
	json_decref(o);
	return NULL;
}

char *auth_mint(enum auth_alg alg, const unsigned char *key, size_t key_len,
		const struct auth_claims *claims, char *err, size_t err_size)
{
	json_t *o = NULL;
	char *text = NULL, *jwt_text = NULL, *result = NULL;
	jwt_t *jwt = NULL;
	int rc;

	if (!claims || !claims->sub || !*claims->sub) {
		put_reason(err, err_size, "token needs a sub");
		goto out;
	}
	if (!key || key_len == 0 || key_len > INT_MAX) {
		put_reason(err, err_size, "no signing key");
		goto out;
	}
	/*
	 * An encrypted key would make OpenSSL prompt for a passphrase on the
	 * terminal; refuse it rather than hang the CLI.
	 */
	if (alg != AUTH_HS256 &&
	    (!contains(key, key_len, "PRIVATE KEY") ||
	     contains(key, key_len, "ENCRYPTED"))) {
		put_reason(err, err_size,
			   "%s signing needs an unencrypted PEM private key",
			   alg_name(alg));
		goto out;
	}
	o = claims_json(claims);
	if (!o) {
		put_reason(err, err_size,
			   "cannot build claims (invalid UTF-8 or no memory)");
		goto out;
	}
	text = json_dumps(o, JSON_COMPACT);
	if (!text || jwt_new(&jwt) != 0 ||
	    jwt_add_grants_json(jwt, text) != 0 ||
	    (claims->kid && jwt_add_header(jwt, "kid", claims->kid) != 0)) {
		put_reason(err, err_size, "cannot build token");
		goto out;
	}
	rc = jwt_set_alg(jwt, alg_to_jwt(alg), key, (int)key_len);
	if (rc != 0) {
		put_reason(err, err_size, "cannot use %s key: %s",
			   alg_name(alg), strerror(rc));
		goto out;
	}
	jwt_text = jwt_encode_str(jwt);
	if (!jwt_text) {
		put_reason(err, err_size, "cannot sign %s token (bad key?)",
			   alg_name(alg));
		goto out;
	}
	result = jwt_text;
	jwt_text = NULL;
out:
	free(jwt_text);
	jwt_free(jwt);
	free(text);
	json_decref(o);
	return result;
}

/* ---- validity window (for the token cache) ------------------------------ */

int auth_token_window(const char *value, size_t len, int64_t *exp,
		      int64_t *nbf, bool *has_nbf)
{
	unsigned char buf[AUTH_MAX_TOKEN];
	const char *tok, *payload;
	size_t tok_len, head_len, payload_len;
	json_t *claims = NULL;
	bool has_exp;
	long n;
	int result = -1;

	if (split_bearer(value, len, &tok, &tok_len, &head_len, NULL, 0) != 0)
		return -1;
	payload = tok + head_len + 1;
	payload_len = (size_t)((const char *)memchr(payload, '.',
						     tok_len - head_len - 1) -
			       payload);
	n = b64url_decode(payload, payload_len, buf, sizeof(buf));
	if (n <= 0)
		goto out;
	/* Duplicate keys: the claim libjwt kept is not certain; no window. */
	claims = json_loadb((const char *)buf, (size_t)n,
			    JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(claims) ||
	    get_date(claims, "exp", true, &has_exp, exp, NULL, 0) != 0 ||
	    get_date(claims, "nbf", false, has_nbf, nbf, NULL, 0) != 0)
		goto out;
	if (!*has_nbf)
		*nbf = 0;
	result = 0;
out:
	json_decref(claims);
	explicit_bzero(buf, sizeof(buf));
	return result;
}
