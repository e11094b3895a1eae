/*
 * The SQL of the SQLite store: the schema, one text per version (run in
 * order by sqlite_store.c's migrate), and every statement a connection
 * prepares once. The few texts tied to one step stay beside it in
 * sqlite_store.c: the schema version's bookkeeping, the connection's
 * PRAGMAs, the ledger key, and the ledger page's SELECT, whose filters
 * are chosen per query.
 */
#include "sqlite_sql.h"

/*
 * Version 1. Ids are bounded like the contract's (tenants 36, users and
 * devices 1-64); the ledger keeps no foreign key so that it outlives the
 * customers it describes.
 */
const char sqlite_schema_v1[] =
	"CREATE TABLE customers ("
	" tenant TEXT PRIMARY KEY NOT NULL CHECK (length(tenant) = 36),"
	" account TEXT CHECK (account IS NULL OR length(account) = 36),"
	" name TEXT NOT NULL CHECK (length(name) <= 256),"
	" included_seats INTEGER CHECK (included_seats >= 0)"
	") STRICT;"
	"CREATE TABLE users ("
	" tenant TEXT NOT NULL REFERENCES customers (tenant),"
	" user_id TEXT NOT NULL CHECK (length(user_id) BETWEEN 1 AND 64),"
	" roles TEXT NOT NULL,"
	" PRIMARY KEY (tenant, user_id)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE devices ("
	" tenant TEXT NOT NULL REFERENCES customers (tenant),"
	" device_id TEXT NOT NULL CHECK (length(device_id) BETWEEN 1 AND 64),"
	" owner_user_id TEXT NOT NULL"
	"  CHECK (length(owner_user_id) BETWEEN 1 AND 64),"
	" PRIMARY KEY (tenant, device_id),"
	" UNIQUE (tenant, device_id, owner_user_id)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE assignments ("
	" tenant TEXT NOT NULL,"
	" device_id TEXT NOT NULL,"
	" user_id TEXT NOT NULL,"
	" client_type INTEGER NOT NULL CHECK (client_type BETWEEN 1 AND 4),"
	" PRIMARY KEY (tenant, device_id),"
	" UNIQUE (tenant, user_id, client_type),"
	" FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, user_id),"
	" FOREIGN KEY (tenant, device_id, user_id)"
	"  REFERENCES devices (tenant, device_id, owner_user_id)"
	") STRICT, WITHOUT ROWID;"
	"CREATE TABLE ledger ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" at_seconds INTEGER NOT NULL,"
	" at_nanos INTEGER NOT NULL CHECK (at_nanos BETWEEN 0 AND 999999999),"
	" tenant TEXT NOT NULL,"
	" user_id TEXT NOT NULL,"
	" device_id TEXT NOT NULL,"
	" from_type INTEGER NOT NULL CHECK (from_type BETWEEN 0 AND 4),"
	" to_type INTEGER NOT NULL CHECK (to_type BETWEEN 0 AND 4),"
	" charged INTEGER NOT NULL CHECK (charged IN (0, 1)),"
	" actor TEXT NOT NULL"
	") STRICT;"
	"CREATE INDEX ledger_by_tenant ON ledger (tenant, id);";

/*
 * Version 2: the ledger is read (ListLedger) and pruned (retention). Each
 * row keeps the request id of its call; a user remembers whether their
 * seat was taken with charges accepted; the indexes serve a page with any
 * one filter in the same few steps at 10 rows or 10 million, and the
 * prune by age; the key signing page tokens lives with the data, so every
 * server on this file accepts the tokens of the others.
 */
const char sqlite_schema_v2[] =
	"ALTER TABLE ledger ADD COLUMN request_id TEXT NOT NULL DEFAULT ''"
	" CHECK (length(request_id) <= 128);"
	"ALTER TABLE users ADD COLUMN seat_charged INTEGER NOT NULL DEFAULT 0"
	" CHECK (seat_charged IN (0, 1));"
	"CREATE INDEX ledger_by_user ON ledger (tenant, user_id, id);"
	"CREATE INDEX ledger_by_device ON ledger (tenant, device_id, id);"
	"CREATE INDEX ledger_charged ON ledger (tenant, id) WHERE charged = 1;"
	"CREATE INDEX ledger_by_time ON ledger (at_seconds);"
	"CREATE TABLE ledger_key ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" key BLOB NOT NULL CHECK (length(key) = 32)"
	") STRICT;";

/*
 * A user's assignments are found through the index of the UNIQUE (tenant,
 * user_id, client_type) constraint of version 1 (SQLite names it). Without
 * statistics the planner prefers the primary key's tenant prefix, which
 * walks every assignment of the tenant: a request would cost the size of
 * its customer.
 */
#define BY_USER "INDEXED BY sqlite_autoindex_assignments_2"

/*
 * Version 3: each customer stores its seats in use (users with at least one
 * assignment), so a request reads one column instead of counting the
 * tenant's assignments. Triggers keep it, inside the statement that
 * changes an assignment, so every path that inserts or deletes one (apply,
 * customer delete, and the drops of a user or device delete) keeps it in
 * the same transaction, and so will any path added later. A move updates
 * only client_type and touches no seat; an assignment never changes user
 * or tenant (refused). The count starts from the rows the database holds.
 */
const char sqlite_schema_v3[] =
	"ALTER TABLE customers ADD COLUMN seats_in_use INTEGER NOT NULL"
	" DEFAULT 0 CHECK (seats_in_use >= 0);"
	"UPDATE customers SET seats_in_use = (SELECT count(DISTINCT user_id)"
	" FROM assignments AS a WHERE a.tenant = customers.tenant);"
	"CREATE TRIGGER seat_taken AFTER INSERT ON assignments"
	" WHEN NOT EXISTS (SELECT 1 FROM assignments " BY_USER
	" WHERE tenant = NEW.tenant AND user_id = NEW.user_id"
	" AND device_id <> NEW.device_id)"
	" BEGIN UPDATE customers SET seats_in_use = seats_in_use + 1"
	" WHERE tenant = NEW.tenant; END;"
	"CREATE TRIGGER seat_freed AFTER DELETE ON assignments"
	" WHEN NOT EXISTS (SELECT 1 FROM assignments " BY_USER
	" WHERE tenant = OLD.tenant AND user_id = OLD.user_id)"
	" BEGIN UPDATE customers SET seats_in_use = seats_in_use - 1"
	" WHERE tenant = OLD.tenant; END;"
	"CREATE TRIGGER seat_owner_fixed BEFORE UPDATE OF tenant, user_id"
	" ON assignments BEGIN"
	" SELECT RAISE(ABORT, 'an assignment never changes user'); END;";

const char *const sqlite_stmt_sql[STMT__COUNT] = {
	[STMT_BEGIN_READ] = "BEGIN",
	[STMT_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[STMT_COMMIT] = "COMMIT",
	[STMT_ROLLBACK] = "ROLLBACK",
	[STMT_SAVEPOINT] = "SAVEPOINT writer",
	[STMT_RELEASE] = "RELEASE writer",
	[STMT_ROLLBACK_TO] = "ROLLBACK TO writer",
	[STMT_JOB_SAVEPOINT] = "SAVEPOINT job",
	[STMT_JOB_RELEASE] = "RELEASE job",
	[STMT_JOB_ROLLBACK_TO] = "ROLLBACK TO job",
	/*
	 * What one request decides on, in one statement (so one snapshot
	 * also outside a transaction): the customer, the user, the device
	 * and the user's assignments, one row each (0-4; one row of NULLs
	 * when none), no row when there is no such customer. A device's
	 * assignment is always its owner's (foreign key), so the device's
	 * type is among those rows when the user owns it; only a device of
	 * another owner is looked up on its own. An empty user or device
	 * matches nothing (ids are 1-64 characters). The PostgreSQL store's
	 * load is the same statement.
	 */
	[STMT_LOAD] =
		"SELECT c.account, c.included_seats, c.seats_in_use,"
		" u.roles, d.owner_user_id,"
		" CASE WHEN d.owner_user_id <> ?2 THEN (SELECT client_type"
		" FROM assignments WHERE tenant = ?1 AND device_id = ?3) END,"
		" a.client_type, a.device_id"
		" FROM customers AS c"
		" LEFT JOIN users AS u ON u.tenant = c.tenant AND u.user_id = ?2"
		" LEFT JOIN devices AS d"
		" ON d.tenant = c.tenant AND d.device_id = ?3"
		" LEFT JOIN assignments AS a " BY_USER
		" ON a.tenant = c.tenant AND a.user_id = ?2"
		" WHERE c.tenant = ?1",
	[STMT_ASSIGN_INSERT] = "INSERT INTO assignments"
			       " (tenant, device_id, user_id, client_type)"
			       " VALUES (?1, ?2, ?3, ?4)",
	[STMT_ASSIGN_MOVE] = "UPDATE assignments SET client_type = ?4"
			     " WHERE tenant = ?1 AND device_id = ?2"
			     " AND user_id = ?3 AND client_type = ?5",
	[STMT_ASSIGN_DELETE] = "DELETE FROM assignments"
			       " WHERE tenant = ?1 AND device_id = ?2"
			       " AND client_type = ?3",
	[STMT_LEDGER_INSERT] =
		"INSERT INTO ledger (at_seconds, at_nanos, tenant, user_id,"
		" device_id, from_type, to_type, charged, actor, request_id)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[STMT_CUSTOMER_UPSERT] =
		"INSERT INTO customers (tenant, account, name, included_seats)"
		" VALUES (?1, ?2, ?3, ?4)"
		" ON CONFLICT (tenant) DO UPDATE SET"
		" account = excluded.account, name = excluded.name,"
		" included_seats = excluded.included_seats"
		" WHERE customers.account IS NOT excluded.account"
		" OR customers.name IS NOT excluded.name"
		" OR customers.included_seats IS NOT excluded.included_seats",
	[STMT_CUSTOMER_LEDGER_DROPS] =
		"INSERT INTO ledger (at_seconds, at_nanos, tenant, user_id,"
		" device_id, from_type, to_type, charged, actor, request_id)"
		" SELECT ?1, ?2, tenant, user_id, device_id, client_type, 0, 0,"
		" ?3, ?5 FROM assignments WHERE tenant = ?4"
		" ORDER BY user_id, client_type",
	[STMT_CUSTOMER_DROP_ASSIGNMENTS] =
		"DELETE FROM assignments WHERE tenant = ?1",
	[STMT_CUSTOMER_DROP_DEVICES] = "DELETE FROM devices WHERE tenant = ?1",
	[STMT_CUSTOMER_DROP_USERS] = "DELETE FROM users WHERE tenant = ?1",
	[STMT_CUSTOMER_DELETE] = "DELETE FROM customers WHERE tenant = ?1",
	[STMT_USER_UPSERT] = "INSERT INTO users (tenant, user_id, roles)"
			     " VALUES (?1, ?2, ?3)"
			     " ON CONFLICT (tenant, user_id) DO UPDATE SET"
			     " roles = excluded.roles"
			     " WHERE users.roles IS NOT excluded.roles",
	[STMT_USER_DELETE] =
		"DELETE FROM users WHERE tenant = ?1 AND user_id = ?2",
	[STMT_DEVICE_UPSERT] =
		"INSERT INTO devices (tenant, device_id, owner_user_id)"
		" VALUES (?1, ?2, ?3)"
		" ON CONFLICT (tenant, device_id) DO UPDATE SET"
		" owner_user_id = excluded.owner_user_id"
		" WHERE devices.owner_user_id IS NOT excluded.owner_user_id",
	[STMT_DEVICE_DELETE] =
		"DELETE FROM devices WHERE tenant = ?1 AND device_id = ?2",
	[STMT_LEDGER_READ] =
		"SELECT id, at_seconds, at_nanos, tenant, user_id, device_id,"
		" from_type, to_type, charged, actor, request_id FROM ledger"
		" WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
	/* The health probe's write: rewrites the header's application id
	 * ("DAS1") with its own value, so it changes nothing but must still
	 * reach the disk. */
	[STMT_PROBE] = "PRAGMA application_id = 1145132849",
	[STMT_LEDGER_LAST_ID] =
		"SELECT coalesce(max(id), 0) FROM ledger WHERE tenant = ?1",
	/* Oldest first by the time index; a small batch per transaction. */
	[STMT_LEDGER_PRUNE] =
		"DELETE FROM ledger WHERE id IN (SELECT id FROM ledger"
		" WHERE at_seconds < ?1 ORDER BY at_seconds LIMIT ?2)",
	[STMT_SEAT_CHARGE] = "UPDATE users SET seat_charged = 1"
			     " WHERE tenant = ?1 AND user_id = ?2",
	/* The seat ends with the user's last assignment. */
	[STMT_SEAT_RELEASE] =
		"UPDATE users SET seat_charged = 0"
		" WHERE tenant = ?1 AND user_id = ?2 AND seat_charged = 1"
		" AND NOT EXISTS (SELECT 1 FROM assignments " BY_USER
		" WHERE tenant = ?1 AND user_id = ?2)",
	[STMT_SEATS_CHARGED] =
		"SELECT count(*) FROM users AS u"
		" WHERE u.tenant = ?1 AND u.seat_charged = 1"
		" AND EXISTS (SELECT 1 FROM assignments AS a"
		" WHERE a.tenant = u.tenant AND a.user_id = u.user_id)",
};
