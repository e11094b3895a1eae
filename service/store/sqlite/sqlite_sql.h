/*
 * The SQL of the SQLite store (sqlite_sql.c): the schema by version and
 * the statements each connection prepares, by id.
 */
#ifndef DAS_STORE_SQLITE_SQL_H
#define DAS_STORE_SQLITE_SQL_H

/* The version the schema texts below build, one after the other. */
#define SQLITE_SCHEMA_VERSION 3

extern const char sqlite_schema_v1[];
extern const char sqlite_schema_v2[];
extern const char sqlite_schema_v3[];

enum stmt_id {
	STMT_BEGIN_READ,
	STMT_BEGIN_WRITE,
	STMT_COMMIT,
	STMT_ROLLBACK,
	STMT_SAVEPOINT,
	STMT_RELEASE,
	STMT_ROLLBACK_TO,
	STMT_JOB_SAVEPOINT,
	STMT_JOB_RELEASE,
	STMT_JOB_ROLLBACK_TO,
	STMT_LOAD,
	STMT_ASSIGN_INSERT,
	STMT_ASSIGN_MOVE,
	STMT_ASSIGN_DELETE,
	STMT_LEDGER_INSERT,
	STMT_CUSTOMER_UPSERT,
	STMT_CUSTOMER_LEDGER_DROPS,
	STMT_CUSTOMER_DROP_ASSIGNMENTS,
	STMT_CUSTOMER_DROP_DEVICES,
	STMT_CUSTOMER_DROP_USERS,
	STMT_CUSTOMER_DELETE,
	STMT_USER_UPSERT,
	STMT_USER_DELETE,
	STMT_DEVICE_UPSERT,
	STMT_DEVICE_DELETE,
	STMT_LEDGER_READ,
	STMT_PROBE,
	STMT_LEDGER_LAST_ID,
	STMT_LEDGER_PRUNE,
	STMT_SEAT_CHARGE,
	STMT_SEAT_RELEASE,
	STMT_SEATS_CHARGED,
	STMT__COUNT
};

/* The text of each statement, by id. */
extern const char *const sqlite_stmt_sql[STMT__COUNT];

#endif
