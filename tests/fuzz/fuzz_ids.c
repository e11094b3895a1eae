/* Fuzz target: GUID normalising, id checks and client type parsing. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/ids.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	char out[DAS_GUID_SIZE], again[DAS_GUID_SIZE];

	if (das_guid_normalize(s, size, out) == 0) {
		/* the canonical form is a fixed point */
		if (strlen(out) != DAS_GUID_LEN ||
		    das_guid_normalize(out, DAS_GUID_LEN, again) != 0 ||
		    memcmp(out, again, DAS_GUID_SIZE) != 0)
			abort();
		/* and holds the input's digits, in order, in lower case */
		size_t i = 0, n = size;
		if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
			i = 1;
			n--;
		}
		for (size_t o = 0; o < DAS_GUID_LEN; o++) {
			if (out[o] == '-')
				continue;
			while (i < n && s[i] == '-')
				i++;
			if (i == n || tolower((unsigned char)s[i++]) != out[o])
				abort();
		}
	}
	(void)das_id_is_valid(s, size);
	int t = das_client_type_parse(s, size);
	if (t != DAS_CLIENT_NONE &&
	    strlen(das_client_type_name(t)) != size)
		abort();
	return 0;
}
