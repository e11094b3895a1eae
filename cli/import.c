/*
 * import FILE: the directory JSON of CONTRACT.md section 6, upserted through
 * the Directory RPCs.
 *
 * The whole file is checked before the first call, so a file with a
 * mistake changes nothing; errors name the entry ("users[2]") and the
 * member. Unknown members are refused rather than ignored: a misspelt
 * "includedSoftphoneSeats" would otherwise silently mean unlimited seats.
 * Customers go first, then users, then devices, because each refers to the
 * one before. Every call is an upsert, so running the import again changes
 * nothing, and a run stopped halfway is completed by running it again.
 */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/ids.h"
#include "deviceassignment/v1/directory.pb-c.h"

#define MAX_FILE_BYTES (32L * 1024 * 1024)
#define MAX_NAME 256
#define MAX_ROLE 128
#define MAX_ROLES 64

struct customer {
	char tenant[DAS_GUID_SIZE];
	char account[DAS_GUID_SIZE]; /* "" = none */
	const char *name;            /* borrowed from the JSON */
	bool has_seats;
	uint32_t seats;
};

struct user {
	char tenant[DAS_GUID_SIZE];
	const char *user_id;
	const char *roles[MAX_ROLES];
	size_t n_roles;
};

struct device {
	char tenant[DAS_GUID_SIZE];
	const char *device_id;
	const char *owner;
};

/* Refuses members of obj not in allowed (NULL-terminated). */
static int only_members(json_t *obj, const char *const *allowed,
			const char *where, char *err, size_t err_size)
{
	const char *key;
	json_t *value;

	json_object_foreach(obj, key, value) {
		size_t i = 0;
		while (allowed[i] && strcmp(allowed[i], key) != 0)
			i++;
		if (!allowed[i]) {
			snprintf(err, err_size, "%s: unknown member \"%.64s\"",
				 where, key);
			return -1;
		}
	}
	return 0;
}

/*
 * The string member key of obj, 1..max_len bytes without NUL. Returns 0 and
 * sets *out (borrowed), 1 when absent or null and !is_required, -1 on error.
 */
static int get_string(json_t *obj, const char *key, bool is_required,
		      size_t max_len, const char **out, const char *where,
		      char *err, size_t err_size)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		if (!is_required)
			return 1;
		snprintf(err, err_size, "%s: \"%s\" is missing", where, key);
		return -1;
	}
	if (!json_is_string(v)) {
		snprintf(err, err_size, "%s: \"%s\" must be a string", where,
			 key);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (len == 0 || len > max_len || strlen(s) != len) {
		snprintf(err, err_size,
			 "%s: \"%s\" must be 1 to %zu characters without NUL",
			 where, key, max_len);
		return -1;
	}
	*out = s;
	return 0;
}

static int get_guid(json_t *obj, const char *key, bool is_required,
		    char out[DAS_GUID_SIZE], const char *where, char *err,
		    size_t err_size)
{
	const char *s;
	int r = get_string(obj, key, is_required, 64, &s, where, err,
			   err_size);

	out[0] = '\0';
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (das_guid_normalize(s, strlen(s), out) != 0) {
		snprintf(err, err_size, "%s: %s \"%s\" is not a GUID", where,
			 key, s);
		return -1;
	}
	return 0;
}

static int get_id(json_t *obj, const char *key, const char **out,
		  const char *where, char *err, size_t err_size)
{
	if (get_string(obj, key, true, DAS_ID_MAX, out, where, err,
		       err_size) != 0) {
		json_t *v = json_object_get(obj, key);
		/* A too-long id reads better as an id error. */
		if (!json_is_string(v) || json_string_length(v) <= DAS_ID_MAX)
			return -1;
	} else if (das_id_is_valid(*out, strlen(*out))) {
		return 0;
	}
	snprintf(err, err_size,
		 "%s: %s must be 1 to %d characters of A-Z a-z 0-9 . _ -",
		 where, key, DAS_ID_MAX);
	return -1;
}

static int parse_customer(json_t *e, const char *where, struct customer *c,
			  char *err, size_t err_size)
{
	static const char *const members[] = {"tenantId", "accountTenantId",
					      "name", "includedSoftphoneSeats",
					      NULL};
	json_t *seats;

	memset(c, 0, sizeof(*c));
	if (!json_is_object(e)) {
		snprintf(err, err_size, "%s: must be an object", where);
		return -1;
	}
	if (only_members(e, members, where, err, err_size) != 0 ||
	    get_guid(e, "tenantId", true, c->tenant, where, err, err_size) !=
		    0 ||
	    get_guid(e, "accountTenantId", false, c->account, where, err,
		     err_size) != 0 ||
	    get_string(e, "name", true, MAX_NAME, &c->name, where, err,
		       err_size) != 0)
		return -1;
	seats = json_object_get(e, "includedSoftphoneSeats");
	if (seats && !json_is_null(seats)) {
		if (!json_is_integer(seats) || json_integer_value(seats) < 0 ||
		    json_integer_value(seats) > UINT32_MAX) {
			snprintf(err, err_size,
				 "%s: \"includedSoftphoneSeats\" must be a "
				 "non-negative integer",
				 where);
			return -1;
		}
		c->has_seats = true;
		c->seats = (uint32_t)json_integer_value(seats);
	}
	return 0;
}

static int parse_user(json_t *e, const char *where, struct user *u, char *err,
		      size_t err_size)
{
	static const char *const members[] = {"tenantId", "userId", "roles",
					      NULL};
	json_t *roles, *role;
	size_t i;

	memset(u, 0, sizeof(*u));
	if (!json_is_object(e)) {
		snprintf(err, err_size, "%s: must be an object", where);
		return -1;
	}
	if (only_members(e, members, where, err, err_size) != 0 ||
	    get_guid(e, "tenantId", true, u->tenant, where, err, err_size) !=
		    0 ||
	    get_id(e, "userId", &u->user_id, where, err, err_size) != 0)
		return -1;
	roles = json_object_get(e, "roles");
	if (!json_is_array(roles)) {
		snprintf(err, err_size,
			 "%s: \"roles\" must be an array of strings", where);
		return -1;
	}
	if (json_array_size(roles) > MAX_ROLES) {
		snprintf(err, err_size, "%s: more than %d roles", where,
			 MAX_ROLES);
		return -1;
	}
	json_array_foreach(roles, i, role) {
		size_t len = json_string_length(role);
		if (!json_is_string(role) || len == 0 || len > MAX_ROLE ||
		    strlen(json_string_value(role)) != len) {
			snprintf(err, err_size,
				 "%s: roles[%zu] must be a string of 1 to %d "
				 "characters",
				 where, i, MAX_ROLE);
			return -1;
		}
		u->roles[u->n_roles++] = json_string_value(role);
	}
	return 0;
}

static int parse_device(json_t *e, const char *where, struct device *d,
			char *err, size_t err_size)
{
	static const char *const members[] = {"tenantId", "deviceId",
					      "ownerUserId", NULL};

	memset(d, 0, sizeof(*d));
	if (!json_is_object(e)) {
		snprintf(err, err_size, "%s: must be an object", where);
		return -1;
	}
	if (only_members(e, members, where, err, err_size) != 0 ||
	    get_guid(e, "tenantId", true, d->tenant, where, err, err_size) !=
		    0 ||
	    get_id(e, "deviceId", &d->device_id, where, err, err_size) != 0 ||
	    get_id(e, "ownerUserId", &d->owner, where, err, err_size) != 0)
		return -1;
	return 0;
}

/* The three sections, each an array when present. */
struct sections {
	json_t *customers, *users, *devices;
};

static int get_sections(json_t *root, struct sections *s, char *err,
			size_t err_size)
{
	static const char *const members[] = {"customers", "users",
					      "pbxDevices", NULL};
	static const char *const names[] = {"customers", "users",
					    "pbxDevices"};
	json_t **slots[] = {&s->customers, &s->users, &s->devices};

	if (!json_is_object(root)) {
		snprintf(err, err_size, "the file must hold one JSON object");
		return -1;
	}
	if (only_members(root, members, "top level", err, err_size) != 0)
		return -1;
	for (size_t i = 0; i < 3; i++) {
		json_t *v = json_object_get(root, names[i]);
		if (v && !json_is_array(v)) {
			snprintf(err, err_size, "\"%s\" must be an array",
				 names[i]);
			return -1;
		}
		*slots[i] = v; /* NULL = empty */
	}
	return 0;
}

static int validate(const struct sections *s, char *err, size_t err_size)
{
	char where[48];
	json_t *e;
	size_t i;

	json_array_foreach(s->customers, i, e) {
		struct customer c;
		snprintf(where, sizeof(where), "customers[%zu]", i);
		if (parse_customer(e, where, &c, err, err_size) != 0)
			return -1;
	}
	json_array_foreach(s->users, i, e) {
		struct user u;
		snprintf(where, sizeof(where), "users[%zu]", i);
		if (parse_user(e, where, &u, err, err_size) != 0)
			return -1;
	}
	json_array_foreach(s->devices, i, e) {
		struct device d;
		snprintf(where, sizeof(where), "pbxDevices[%zu]", i);
		if (parse_device(e, where, &d, err, err_size) != 0)
			return -1;
	}
	return 0;
}

/* One Directory upsert; counts a change. */
static int upsert(struct cli_ctx *ctx, enum das_rpc_method method,
		  const ProtobufCMessage *req, const char *where,
		  size_t *changed)
{
	Deviceassignment__V1__DirectoryResponse *resp = NULL;
	char what[96];

	snprintf(what, sizeof(what), "import %s", where);
	if (cli_call(ctx, method, req, (ProtobufCMessage **)&resp, what) != 0)
		return -1;
	if (resp->changed)
		(*changed)++;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static int send_all(struct cli_ctx *ctx, const struct sections *s,
		    size_t *changed)
{
	char where[48], err[16];
	json_t *e;
	size_t i;

	/* Validated already: the parses below cannot fail. */
	json_array_foreach(s->customers, i, e) {
		Deviceassignment__V1__UpsertCustomerRequest req =
			DEVICEASSIGNMENT__V1__UPSERT_CUSTOMER_REQUEST__INIT;
		struct customer c;
		snprintf(where, sizeof(where), "customers[%zu]", i);
		if (parse_customer(e, where, &c, err, sizeof(err)) != 0)
			return -1;
		req.tenant_id = c.tenant;
		req.account_tenant_id = c.account;
		req.name = (char *)c.name;
		req.has_included_softphone_seats = c.has_seats;
		req.included_softphone_seats = c.seats;
		if (upsert(ctx, DAS_RPC_UPSERT_CUSTOMER, &req.base, where,
			   changed) != 0)
			return -1;
	}
	json_array_foreach(s->users, i, e) {
		Deviceassignment__V1__UpsertUserRequest req =
			DEVICEASSIGNMENT__V1__UPSERT_USER_REQUEST__INIT;
		struct user u;
		snprintf(where, sizeof(where), "users[%zu]", i);
		if (parse_user(e, where, &u, err, sizeof(err)) != 0)
			return -1;
		req.tenant_id = u.tenant;
		req.user_id = (char *)u.user_id;
		req.n_roles = u.n_roles;
		req.roles = (char **)u.roles;
		if (upsert(ctx, DAS_RPC_UPSERT_USER, &req.base, where,
			   changed) != 0)
			return -1;
	}
	json_array_foreach(s->devices, i, e) {
		Deviceassignment__V1__UpsertPbxDeviceRequest req =
			DEVICEASSIGNMENT__V1__UPSERT_PBX_DEVICE_REQUEST__INIT;
		struct device d;
		snprintf(where, sizeof(where), "pbxDevices[%zu]", i);
		if (parse_device(e, where, &d, err, sizeof(err)) != 0)
			return -1;
		req.tenant_id = d.tenant;
		req.device_id = (char *)d.device_id;
		req.owner_user_id = (char *)d.owner;
		if (upsert(ctx, DAS_RPC_UPSERT_PBX_DEVICE, &req.base, where,
			   changed) != 0)
			return -1;
	}
	return 0;
}

static json_t *load(const char *path, char *err, size_t err_size)
{
	json_error_t jerr;
	json_t *root;
	struct stat sb;

	if (strcmp(path, "-") == 0) {
		root = json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr);
	} else {
		if (stat(path, &sb) != 0) {
			snprintf(err, err_size, "%s: %s", path,
				 strerror(errno));
			return NULL;
		}
		if (!S_ISREG(sb.st_mode) || sb.st_size > MAX_FILE_BYTES) {
			snprintf(err, err_size,
				 "%s: not a regular file of at most %ld bytes",
				 path, MAX_FILE_BYTES);
			return NULL;
		}
		root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	}
	if (!root)
		snprintf(err, err_size, "%s: line %d column %d: %s", path,
			 jerr.line, jerr.column, jerr.text);
	return root;
}

int cli_cmd_import(struct cli_ctx *ctx, int argc, char **argv)
{
	struct sections s;
	json_t *root = NULL;
	char err[512];
	size_t changed = 0;
	int argi, code = CLI_EXIT_USAGE;

	if (cli_parse_flags(ctx, "import",
			    "Upserts the customers, users and pbxDevices of "
			    "FILE, a directory JSON file\n(- = stdin), given "
			    "after the flags. The token needs scope\n"
			    "directory:admin. Running it twice changes "
			    "nothing.",
			    NULL, 0, true, argc, argv, &argi, &code) != 0)
		return code;
	if (argi >= argc) {
		cli_error("import: missing FILE (see --help)");
		return CLI_EXIT_USAGE;
	}
	if (argi + 1 < argc) {
		cli_error("import: unexpected argument '%s' (see --help)",
			  argv[argi + 1]);
		return CLI_EXIT_USAGE;
	}
	root = load(argv[argi], err, sizeof(err));
	if (!root || get_sections(root, &s, err, sizeof(err)) != 0 ||
	    validate(&s, err, sizeof(err)) != 0) {
		cli_error("import: %s", err);
		goto done;
	}
	code = CLI_EXIT_FAILURE;
	if (send_all(ctx, &s, &changed) != 0)
		goto done;
	printf("imported %zu customers, %zu users, %zu devices (%zu changed)\n",
	       json_array_size(s.customers), json_array_size(s.users),
	       json_array_size(s.devices), changed);
	code = CLI_EXIT_OK;
done:
	json_decref(root);
	return code;
}
