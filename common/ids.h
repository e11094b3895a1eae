/*
 * Identifiers of the contract: tenant GUIDs, user/device ids, client types.
 * Pure functions, no allocation.
 */
#ifndef DAS_COMMON_IDS_H
#define DAS_COMMON_IDS_H

#include <stdbool.h>
#include <stddef.h>

/* Canonical GUID text: lower-case 8-4-4-4-12, plus NUL. */
#define DAS_GUID_LEN 36
#define DAS_GUID_SIZE (DAS_GUID_LEN + 1)

/* User and device ids: 1-64 chars of [A-Za-z0-9._-]. */
#define DAS_ID_MAX 64
#define DAS_ID_SIZE (DAS_ID_MAX + 1)

/*
 * Parses a tenant GUID given as 32 hex digits, plain or 8-4-4-4-12, either
 * optionally wrapped in {}, any case. On success writes the canonical form
 * to out and returns 0; returns -1 (out untouched) otherwise. len is the
 * input length (the input need not be NUL-terminated).
 */
int das_guid_normalize(const char *in, size_t len, char out[DAS_GUID_SIZE]);

/* True when s (len bytes) is a valid user or device id. */
bool das_id_is_valid(const char *s, size_t len);

/* Client types, numbered as deviceassignment.v1.ClientType. */
enum das_client_type {
	DAS_CLIENT_NONE = 0, /* CLIENT_TYPE_UNSPECIFIED: no assignment */
	DAS_CLIENT_DESKTOP = 1,
	DAS_CLIENT_MOBILE = 2,
	DAS_CLIENT_WEBRTC = 3,
	DAS_CLIENT_CRM = 4,
};
#define DAS_CLIENT_TYPE_COUNT 5 /* including NONE */

/* "desktop", "mobile", "webrtc", "crm"; "" for NONE or out of range. */
const char *das_client_type_name(int type);

/*
 * The client type named by s (len bytes), case-insensitive;
 * DAS_CLIENT_NONE when it names none of the four.
 */
enum das_client_type das_client_type_parse(const char *s, size_t len);

/* True for DESKTOP..CRM. */
bool das_client_type_is_valid(int type);

#endif
