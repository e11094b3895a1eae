/*
 * The SQL of the PostgreSQL store: every statement a connection prepares
 * (postgres_store.c's session set-up) and the schema, one text per
 * version. The few texts tied to one step stay beside it in
 * postgres_store.c: the session's settings, the schema version's
 * bookkeeping, BEGIN, the ledger key, the health probe and the ledger
 * page's SELECT, whose filters are chosen per query.
 */
#include "postgres_sql.h"

/* First keys of the two-key advisory locks: a tenant ("das\0"), one of its
 * users ("das\1") and one of its devices ("das\2"). */
#define PG_TENANT_LOCK_SPACE "1684108032"
#define PG_USER_LOCK_SPACE "1684108033"
#define PG_DEVICE_LOCK_SPACE "1684108034"

const struct pg_stmt_def pg_stmts[ST__COUNT] = {
	/* The tenant shared, then its user and its device exclusive, in this
	 * order in every transaction (no deadlock between writers). The lock
	 * functions are strict: a NULL key takes no lock. */
	[ST_LOCK_KEYS] = {"das_lock_keys", 3,
			  "SELECT pg_advisory_xact_lock_shared("
			  PG_TENANT_LOCK_SPACE ", $1::int4), "
			  "pg_advisory_xact_lock(" PG_USER_LOCK_SPACE
			  ", $2::int4), "
			  "pg_advisory_xact_lock(" PG_DEVICE_LOCK_SPACE
			  ", $3::int4)"},
	/* The whole tenant: a change of the customer itself. */
	[ST_LOCK_TENANT] = {"das_lock_tenant", 1,
			    "SELECT pg_advisory_xact_lock(" PG_TENANT_LOCK_SPACE
			    ", $1::int4)"},
	/*
	 * Everything a decision needs, in one statement (one snapshot), with
	 * one index lookup per table: the customer, the user, the device, and
	 * the user's assignments (0-4, one row each; a row with NULLs when
	 * none). A device's assignment is always its owner's (foreign key), so
	 * the device's type is among those rows when the user owns it; only a
	 * device of another owner is looked up on its own. An empty user or
	 * device matches nothing (ids are 1-64 chars).
	 */
	[ST_LOAD] = {"das_load", 3,
		     "SELECT c.account, c.included_seats, c.seats_in_use, "
		     "u.roles, d.owner, "
		     "CASE WHEN d.owner <> $2 THEN (SELECT client_type "
		     "FROM assignments WHERE tenant = $1 "
		     "AND device_id = $3) END, "
		     "a.client_type, a.device_id "
		     "FROM customers c "
		     "LEFT JOIN users u ON u.tenant = c.tenant "
		     "AND u.user_id = $2 "
		     "LEFT JOIN devices d ON d.tenant = c.tenant "
		     "AND d.device_id = $3 "
		     "LEFT JOIN assignments a ON a.tenant = c.tenant "
		     "AND a.user_id = $2 "
		     "WHERE c.tenant = $1"},
	/*
	 * The loads of a batch of callers as one statement: ST_LOAD for each
	 * key of the three arrays (tenants, users, devices), its rows led by
	 * the key's place in them (from 1). OFFSET 0 keeps the subquery
	 * apart, so each key is a nested loop of index lookups as above,
	 * whatever the size of the tables and the number of keys.
	 */
	[ST_LOAD_BATCH] = {"das_load_batch", 3,
			   "SELECT k.i, r.* FROM unnest($1::text[], "
			   "$2::text[], $3::text[]) WITH ORDINALITY "
			   "AS k(t, u, d, i) CROSS JOIN LATERAL ("
			   "SELECT c.account, c.included_seats, "
			   "c.seats_in_use, u.roles, d.owner, "
			   "CASE WHEN d.owner <> k.u THEN (SELECT client_type "
			   "FROM assignments WHERE tenant = k.t "
			   "AND device_id = k.d) END, "
			   "a.client_type, a.device_id "
			   "FROM customers c "
			   "LEFT JOIN users u ON u.tenant = c.tenant "
			   "AND u.user_id = k.u "
			   "LEFT JOIN devices d ON d.tenant = c.tenant "
			   "AND d.device_id = k.d "
			   "LEFT JOIN assignments a ON a.tenant = c.tenant "
			   "AND a.user_id = k.u "
			   "WHERE c.tenant = k.t OFFSET 0) r"},
	[ST_DEVICE_OWNER] = {"das_device_owner", 2,
			     "SELECT owner FROM devices "
			     "WHERE tenant = $1 AND device_id = $2"},
	[ST_USER_SEATED] = {"das_user_seated", 2,
			    "SELECT EXISTS (SELECT 1 FROM assignments "
			    "WHERE tenant = $1 AND user_id = $2)"},
	/*
	 * Releasing or moving an assignment the decision read: when the row
	 * is not there (load() and apply() disagree, which the locks rule
	 * out) the statement fails with division_by_zero (22012) and the
	 * transaction with it, so a COMMIT already queued behind it in the
	 * pipeline never applies half of a change. Each returns 1.
	 */
	[ST_ASSIGN_DELETE] = {"das_assign_delete", 4,
			      "WITH d AS (DELETE FROM assignments "
			      "WHERE tenant = $1 AND device_id = $2 "
			      "AND client_type = $3 AND user_id = $4 "
			      "RETURNING 1) "
			      "SELECT 1 / count(*)::int FROM d"},
	/* A device to another type of the same user: one statement. */
	[ST_ASSIGN_MOVE] = {"das_assign_move", 5,
			    "WITH m AS (UPDATE assignments SET client_type = $5 "
			    "WHERE tenant = $1 AND device_id = $2 "
			    "AND client_type = $3 AND user_id = $4 "
			    "RETURNING 1) "
			    "SELECT 1 / count(*)::int FROM m"},
	[ST_ASSIGN_INSERT] = {"das_assign_insert", 4,
			      "INSERT INTO assignments "
			      "(tenant, device_id, user_id, client_type) "
			      "VALUES ($1, $2, $3, $4)"},
	[ST_LEDGER_INSERT] = {"das_ledger_insert", 10,
			      "INSERT INTO ledger (at_seconds, at_nanos, "
			      "tenant, user_id, device_id, from_type, "
			      "to_type, is_charged, actor, request_id) "
			      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
			      "$10)"},
	/*
	 * A user takes a seat. When the decision read the count ($4), it goes
	 * up only if the seat rule still reads as it did, now that the
	 * customer row is locked: not full for a seat without charges, full
	 * for a charged one; 0 rows = it moved: decide again. A charged seat
	 * is marked on the user.
	 */
	[ST_SEAT_TAKE] = {"das_seat_take", 4,
			  "WITH c AS (UPDATE customers "
			  "SET seats_in_use = seats_in_use + 1 "
			  "WHERE tenant = $1 AND (NOT $4::bool OR "
			  "(included_seats IS NOT NULL "
			  "AND seats_in_use >= included_seats) = $3::bool) "
			  "RETURNING 1), "
			  "u AS (UPDATE users SET seat_charged = true "
			  "WHERE tenant = $1 AND user_id = $2 AND $3::bool "
			  "AND EXISTS (SELECT 1 FROM c) RETURNING 1) "
			  "SELECT count(*) FROM c"},
	/* The seat ends with the user's last assignment (charged or not). */
	[ST_SEAT_RELEASE] = {"das_seat_release", 2,
			     "WITH g AS (SELECT NOT EXISTS (SELECT 1 "
			     "FROM assignments WHERE tenant = $1 "
			     "AND user_id = $2) AS is_gone), "
			     "u AS (UPDATE users SET seat_charged = false "
			     "WHERE tenant = $1 AND user_id = $2 "
			     "AND seat_charged AND (SELECT is_gone FROM g) "
			     "RETURNING 1) "
			     "UPDATE customers SET seats_in_use = seats_in_use - 1 "
			     "WHERE tenant = $1 AND (SELECT is_gone FROM g)"},
	[ST_CUSTOMER_PUT] = {"das_customer_put", 4,
			     "INSERT INTO customers "
			     "(tenant, account, name, included_seats) "
			     "VALUES ($1, $2, $3, $4) "
			     "ON CONFLICT (tenant) DO UPDATE SET "
			     "account = EXCLUDED.account, "
			     "name = EXCLUDED.name, "
			     "included_seats = EXCLUDED.included_seats "
			     "WHERE (customers.account, customers.name, "
			     "customers.included_seats) IS DISTINCT FROM "
			     "(EXCLUDED.account, EXCLUDED.name, "
			     "EXCLUDED.included_seats)"},
	/* One ledger row per dropped assignment, in a stable order. */
	[ST_LEDGER_DROP_ALL] = {"das_ledger_drop_all", 5,
				"INSERT INTO ledger (at_seconds, at_nanos, "
				"tenant, user_id, device_id, from_type, "
				"to_type, is_charged, actor, request_id) "
				"SELECT $2::int8, $3::int4, tenant, user_id, "
				"device_id, client_type, 0, false, $4::text, "
				"$5::text "
				"FROM assignments "
				"WHERE tenant = $1 "
				"ORDER BY user_id, client_type"},
	[ST_ASSIGN_DELETE_TENANT] = {"das_assign_delete_tenant", 1,
				     "DELETE FROM assignments "
				     "WHERE tenant = $1"},
	/* Users and devices go with it (ON DELETE CASCADE). */
	[ST_CUSTOMER_DELETE] = {"das_customer_delete", 1,
				"DELETE FROM customers WHERE tenant = $1"},
	[ST_USER_PUT] = {"das_user_put", 3,
			 "INSERT INTO users (tenant, user_id, roles) "
			 "VALUES ($1, $2, $3) "
			 "ON CONFLICT (tenant, user_id) DO UPDATE SET "
			 "roles = EXCLUDED.roles "
			 "WHERE users.roles IS DISTINCT FROM EXCLUDED.roles"},
	[ST_USER_DELETE] = {"das_user_delete", 2,
			    "DELETE FROM users "
			    "WHERE tenant = $1 AND user_id = $2"},
	[ST_DEVICE_PUT] = {"das_device_put", 3,
			   "INSERT INTO devices (tenant, device_id, owner) "
			   "VALUES ($1, $2, $3) "
			   "ON CONFLICT (tenant, device_id) DO UPDATE SET "
			   "owner = EXCLUDED.owner "
			   "WHERE devices.owner IS DISTINCT FROM EXCLUDED.owner"},
	[ST_DEVICE_DELETE] = {"das_device_delete", 2,
			      "DELETE FROM devices "
			      "WHERE tenant = $1 AND device_id = $2"},
	[ST_LEDGER_READ] = {"das_ledger_read", 3,
			    "SELECT id, at_seconds, at_nanos, tenant, "
			    "user_id, device_id, from_type, to_type, "
			    "is_charged, actor, request_id FROM ledger "
			    "WHERE tenant = $1 AND id > $2 "
			    "ORDER BY id LIMIT $3"},
	[ST_LEDGER_LAST_ID] = {"das_ledger_last_id", 1,
			       "SELECT coalesce(max(id), 0) FROM ledger "
			       "WHERE tenant = $1"},
	/* Oldest first by the time index; a small batch per transaction. */
	[ST_LEDGER_PRUNE] = {"das_ledger_prune", 2,
			     "DELETE FROM ledger WHERE id IN (SELECT id "
			     "FROM ledger WHERE at_seconds < $1 "
			     "ORDER BY at_seconds LIMIT $2)"},
	[ST_SEATS_CHARGED] = {"das_seats_charged", 1,
			      "SELECT count(*) FROM users u "
			      "WHERE u.tenant = $1 AND u.seat_charged "
			      "AND EXISTS (SELECT 1 FROM assignments a "
			      "WHERE a.tenant = u.tenant "
			      "AND a.user_id = u.user_id)"},
};

/* Version 1 of the schema. Run once, under the schema lock. */
const char pg_schema_v1[] =
	"CREATE TABLE customers ("
	" tenant text PRIMARY KEY,"
	" account text,"
	" name text NOT NULL DEFAULT '',"
	" included_seats bigint CHECK (included_seats >= 0));"
	"CREATE TABLE users ("
	" tenant text NOT NULL REFERENCES customers (tenant)"
	"  ON DELETE CASCADE,"
	" user_id text NOT NULL,"
	" roles text NOT NULL DEFAULT '',"
	" PRIMARY KEY (tenant, user_id));"
	"CREATE TABLE devices ("
	" tenant text NOT NULL REFERENCES customers (tenant)"
	"  ON DELETE CASCADE,"
	" device_id text NOT NULL,"
	" owner text NOT NULL,"
	" PRIMARY KEY (tenant, device_id),"
	" UNIQUE (tenant, device_id, owner));"
	/* A device is in at most one client type; a user has at most one
	 * device per client type; the user exists and owns the device, so
	 * neither can be deleted, nor the owner changed, while assigned. */
	"CREATE TABLE assignments ("
	" tenant text NOT NULL,"
	" device_id text NOT NULL,"
	" user_id text NOT NULL,"
	" client_type smallint NOT NULL CHECK (client_type BETWEEN 1 AND 4),"
	" PRIMARY KEY (tenant, device_id),"
	" UNIQUE (tenant, user_id, client_type),"
	" FOREIGN KEY (tenant, device_id, user_id)"
	"  REFERENCES devices (tenant, device_id, owner),"
	" FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, user_id));"
	/* The ledger outlives the customers it mentions. */
	"CREATE TABLE ledger ("
	" id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	" at_seconds bigint NOT NULL,"
	" at_nanos integer NOT NULL,"
	" tenant text NOT NULL,"
	" user_id text NOT NULL,"
	" device_id text NOT NULL,"
	" from_type smallint NOT NULL,"
	" to_type smallint NOT NULL,"
	" is_charged boolean NOT NULL,"
	" actor text NOT NULL);"
	"CREATE INDEX ledger_tenant_id ON ledger (tenant, id);";

/*
 * Version 2: the ledger is read (ListLedger) and pruned (retention). Each
 * row keeps the request id of its call; a user remembers whether their
 * seat was taken with charges accepted; the indexes serve a page with any
 * one filter in the same few steps at 10 rows or 10 million, and the prune
 * by age; the key signing page tokens lives in the database, so every
 * replica accepts the tokens of the others.
 */
const char pg_schema_v2[] =
	"ALTER TABLE ledger ADD COLUMN request_id text NOT NULL DEFAULT '';"
	"ALTER TABLE users ADD COLUMN seat_charged boolean NOT NULL "
	" DEFAULT false;"
	"CREATE INDEX ledger_by_user ON ledger (tenant, user_id, id);"
	"CREATE INDEX ledger_by_device ON ledger (tenant, device_id, id);"
	"CREATE INDEX ledger_charged ON ledger (tenant, id) WHERE is_charged;"
	"CREATE INDEX ledger_by_time ON ledger (at_seconds);"
	"CREATE TABLE ledger_key ("
	" id integer PRIMARY KEY CHECK (id = 1),"
	" key bytea NOT NULL CHECK (length(key) = 32));";

/*
 * Version 3: each customer keeps its seat count (users with at least one
 * assignment), changed in the transaction of every change that takes or
 * ends a seat, so a decision reads one row instead of counting the
 * tenant's assignments. Counted from the rows once, here.
 */
const char pg_schema_v3[] =
	"ALTER TABLE customers ADD COLUMN seats_in_use bigint NOT NULL"
	" DEFAULT 0 CHECK (seats_in_use >= 0);"
	"UPDATE customers c SET seats_in_use = s.n FROM (SELECT tenant,"
	" count(DISTINCT user_id) AS n FROM assignments GROUP BY tenant) s"
	" WHERE s.tenant = c.tenant;";
