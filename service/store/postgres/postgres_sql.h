/*
 * The SQL of the PostgreSQL store (postgres_sql.c): the statements each
 * connection prepares, by id, and the schema by version.
 */
#ifndef DAS_STORE_POSTGRES_SQL_H
#define DAS_STORE_POSTGRES_SQL_H

/* The version the schema texts below build, one after the other. */
#define PG_SCHEMA_VERSION 3
/* Key of the advisory lock held while creating or migrating the schema. */
#define PG_SCHEMA_LOCK_KEY "7364617300000001"

enum pg_stmt {
	ST_LOCK_KEYS,
	ST_LOCK_TENANT,
	ST_LOAD,
	ST_LOAD_BATCH,
	ST_DEVICE_OWNER,
	ST_USER_SEATED,
	ST_ASSIGN_DELETE,
	ST_ASSIGN_INSERT,
	ST_ASSIGN_MOVE,
	ST_LEDGER_INSERT,
	ST_SEAT_TAKE,
	ST_SEAT_RELEASE,
	ST_CUSTOMER_PUT,
	ST_LEDGER_DROP_ALL,
	ST_ASSIGN_DELETE_TENANT,
	ST_CUSTOMER_DELETE,
	ST_USER_PUT,
	ST_USER_DELETE,
	ST_DEVICE_PUT,
	ST_DEVICE_DELETE,
	ST_LEDGER_READ,
	ST_LEDGER_LAST_ID,
	ST_LEDGER_PRUNE,
	ST_SEATS_CHARGED,
	ST__COUNT
};

struct pg_stmt_def {
	const char *name;
	int n_params;
	const char *sql;
};

/* Each statement's prepared name, parameter count and text, by id. */
extern const struct pg_stmt_def pg_stmts[ST__COUNT];

extern const char pg_schema_v1[];
extern const char pg_schema_v2[];
extern const char pg_schema_v3[];

#endif
