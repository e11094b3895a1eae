/*
 * Fuzz target: an Authorization value through JWT verification. The input
 * is the raw header value; a signed prefix in the corpus lets mutations
 * reach the claim checks as well as the parsers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "service/auth/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzz-secret-fuzz-secret-fuzz-sec";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auth_config cfg = {
		.alg = AUTH_HS256,
		.key = (unsigned char *)secret,
		.key_len = sizeof(secret) - 1,
		.issuer = NULL,
		.audience = NULL,
	};
	struct domain_principal who;
	char why[128];

	if (auth_verify(&cfg, (const char *)data, size, 1700000000, &who, why,
			sizeof(why)) == 0) {
		if (who.n_tenants > DOMAIN_MAX_TENANTS || !who.sub[0])
			abort();
	}
	return 0;
}
