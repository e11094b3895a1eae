/*
 * service/domain: the check order (rows 2-10) and the assignment rules —
 * move, replace, idempotent repeats, seats and the charge handshake, owner
 * changes — against hand-built snapshots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "service/domain/domain.h"

#define CUST "0f8fad5b-d9cb-469f-a165-70867728950e"
#define ACCT "7c9e6679-7425-40de-944b-e07fc1f90ae7"
#define OTHER "16fd2706-8baf-433b-82eb-8c7fada847da"

static struct domain_principal who_all(void)
{
	struct domain_principal w;

	memset(&w, 0, sizeof(w));
	snprintf(w.sub, sizeof(w.sub), "tester");
	w.is_all_tenants = true;
	w.scopes = DOMAIN_SCOPE_ASSIGN;
	return w;
}

static struct domain_principal who_tenant(const char *tenant)
{
	struct domain_principal w = who_all();

	w.is_all_tenants = false;
	w.n_tenants = 1;
	snprintf(w.tenants[0], sizeof(w.tenants[0]), "%s", tenant);
	return w;
}

static struct domain_request req_of(enum domain_op op, const char *customer,
				    const char *user, const char *device,
				    int type)
{
	struct domain_request r;

	memset(&r, 0, sizeof(r));
	r.op = op;
	r.customer = customer;
	r.customer_len = strlen(customer);
	r.user = user;
	r.user_len = strlen(user);
	r.device = device;
	r.device_len = device ? strlen(device) : 0;
	r.client_type = type;
	return r;
}

/* A customer with account ACCT and 2 seats, user u1 with both roles who
 * owns d1 and d2, nothing assigned. */
static struct domain_snapshot base_snap(void)
{
	struct domain_snapshot s;

	memset(&s, 0, sizeof(s));
	s.is_customer_found = true;
	s.customer_has_account = true;
	snprintf(s.customer_account, sizeof(s.customer_account), ACCT);
	s.is_seat_limited = true;
	s.included_seats = 2;
	s.seats_in_use = 0;
	s.is_user_found = true;
	s.has_role_uc = true;
	s.has_role_uc_softphone = true;
	s.is_device_found = true;
	snprintf(s.device_owner, sizeof(s.device_owner), "u1");
	s.device_type = DAS_CLIENT_NONE;
	return s;
}

static struct domain_decision decide(const struct domain_principal *w,
				     struct domain_request *r,
				     const struct domain_snapshot *s)
{
	struct domain_key key;
	struct domain_decision d;
	char detail[DOMAIN_DETAIL_SIZE];

	assert_int_equal(domain_validate(r, &key, detail), DAS_OK);
	domain_decide(w, r, &key, s, &d);
	return d;
}

static void validate_rows_2_and_3(void **state)
{
	struct domain_request r;
	struct domain_key key;
	char detail[DOMAIN_DETAIL_SIZE];

	(void)state;
	r = req_of(DOMAIN_OP_ASSIGN, "{0F8FAD5B-D9CB-469F-A165-70867728950E}",
		   "u1", "d1", 1);
	assert_int_equal(domain_validate(&r, &key, detail), DAS_OK);
	assert_string_equal(key.customer, CUST);
	assert_false(key.has_account);
	assert_string_equal(key.user, "u1");
	assert_string_equal(key.device, "d1");

	/* row 2 comes before row 3, and quotes the value as sent */
	r = req_of(DOMAIN_OP_ASSIGN, "nope", "bad user", "d1", 1);
	assert_int_equal(domain_validate(&r, &key, detail),
			 DAS_INVALID_TENANT_ID);
	assert_string_equal(detail, "nope");

	r = req_of(DOMAIN_OP_ASSIGN, CUST, "bad user", "d1", 1);
	assert_int_equal(domain_validate(&r, &key, detail), DAS_INVALID_ID);
	assert_string_equal(detail, "bad user");

	r = req_of(DOMAIN_OP_UNASSIGN, CUST, "u1", "", 1);
	assert_int_equal(domain_validate(&r, &key, detail), DAS_INVALID_ID);
	assert_string_equal(detail, "");

	/* LIST has no device to check */
	r = req_of(DOMAIN_OP_LIST, CUST, "u1", NULL, 0);
	assert_int_equal(domain_validate(&r, &key, detail), DAS_OK);

	/* the account is a tenant id too, checked first */
	r = req_of(DOMAIN_OP_ASSIGN, "also-bad", "u1", "d1", 1);
	r.account = "acct";
	r.account_len = 4;
	assert_int_equal(domain_validate(&r, &key, detail),
			 DAS_INVALID_TENANT_ID);
	assert_string_equal(detail, "acct");
	r.customer = CUST;
	r.customer_len = strlen(CUST);
	r.account = ACCT;
	r.account_len = strlen(ACCT);
	assert_int_equal(domain_validate(&r, &key, detail), DAS_OK);
	assert_true(key.has_account);
	assert_string_equal(key.account, ACCT);
}

static void quoted_values_are_bounded_and_printable(void **state)
{
	char big[1000], detail[DOMAIN_DETAIL_SIZE];
	struct domain_request r;
	struct domain_key key;

	(void)state;
	memset(big, 'a', sizeof(big));
	big[3] = '\n';
	big[4] = (char)0xc3;
	r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1", 1);
	r.user = big;
	r.user_len = sizeof(big);
	assert_int_equal(domain_validate(&r, &key, detail), DAS_INVALID_ID);
	assert_int_equal(strlen(detail), 128 + 3);
	assert_memory_equal(detail, "aaa??aaa", 8);
	assert_string_equal(detail + 128, "...");
}

static void row_4_authorization(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1", 1);
	struct domain_principal w;

	(void)state;
	w = who_tenant(CUST);
	assert_int_equal(decide(&w, &r, &s).status, DAS_OK);
	/* the customer's account covers it */
	w = who_tenant(ACCT);
	assert_int_equal(decide(&w, &r, &s).status, DAS_OK);
	/* another tenant does not */
	w = who_tenant(OTHER);
	assert_int_equal(decide(&w, &r, &s).status, DAS_FORBIDDEN);
	/* no scope */
	w = who_all();
	w.scopes = DOMAIN_SCOPE_DIRECTORY;
	assert_int_equal(decide(&w, &r, &s).status, DAS_FORBIDDEN);
	/* row 4 before row 5 (an invalid client type) and row 6 */
	w = who_tenant(OTHER);
	r.client_type = 0;
	s.is_customer_found = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_FORBIDDEN);
}

/* Ledger and seat reads: rows 4, 5 (the caller's verdict), 6. */
static void ledger_read_rows_4_to_6(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_request r = req_of(DOMAIN_OP_LIST, CUST, "u1", "", 0);
	struct domain_principal w = who_tenant(ACCT);
	struct domain_key k;
	char detail[DOMAIN_DETAIL_SIZE];

	(void)state;
	assert_int_equal(domain_validate(&r, &k, detail), DAS_OK);
	/* devices:assign alone does not read the ledger */
	assert_int_equal(domain_check_ledger(&w, &k, &s, DAS_OK),
			 DAS_FORBIDDEN);
	w.scopes = DOMAIN_SCOPE_LEDGER;
	assert_int_equal(domain_check_ledger(&w, &k, &s, DAS_OK), DAS_OK);
	/* row 5 comes after row 4 and before row 6 */
	assert_int_equal(
		domain_check_ledger(&w, &k, &s, DAS_INVALID_ARGUMENT),
		DAS_INVALID_ARGUMENT);
	w = who_tenant(OTHER);
	w.scopes = DOMAIN_SCOPE_LEDGER;
	assert_int_equal(
		domain_check_ledger(&w, &k, &s, DAS_INVALID_ARGUMENT),
		DAS_FORBIDDEN);
	w = who_all();
	w.scopes = DOMAIN_SCOPE_LEDGER;
	s.is_customer_found = false;
	assert_int_equal(domain_check_ledger(&w, &k, &s, DAS_OK),
			 DAS_CUSTOMER_NOT_FOUND);
	/* an account in the path must be the customer's */
	s = base_snap();
	k.has_account = true;
	snprintf(k.account, sizeof(k.account), "%s", OTHER);
	assert_int_equal(domain_check_ledger(&w, &k, &s, DAS_OK),
			 DAS_CUSTOMER_NOT_FOUND);
	snprintf(k.account, sizeof(k.account), "%s", ACCT);
	assert_int_equal(domain_check_ledger(&w, &k, &s, DAS_OK), DAS_OK);
}

static void row_5_client_type(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1", 0);

	(void)state;
	assert_int_equal(decide(&w, &r, &s).status, DAS_INVALID_CLIENT_TYPE);
	r.client_type = 5;
	assert_int_equal(decide(&w, &r, &s).status, DAS_INVALID_CLIENT_TYPE);
	r.client_type = -1;
	assert_int_equal(decide(&w, &r, &s).status, DAS_INVALID_CLIENT_TYPE);
	/* row 5 before row 6 */
	s.is_customer_found = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_INVALID_CLIENT_TYPE);
	/* unassign carries no client type */
	r = req_of(DOMAIN_OP_UNASSIGN, CUST, "u1", "d1", 0);
	s = base_snap();
	assert_int_equal(decide(&w, &r, &s).status, DAS_OK);
}

static void rows_6_7_8_not_found(void **state)
{
	struct domain_snapshot s;
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1", 1);

	(void)state;
	s = base_snap();
	s.is_customer_found = false;
	s.is_user_found = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_CUSTOMER_NOT_FOUND);

	s = base_snap();
	s.is_user_found = false;
	s.is_device_found = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_USER_NOT_FOUND);

	s = base_snap();
	s.is_device_found = false;
	s.has_role_uc = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_DEVICE_NOT_FOUND);

	/* owned by someone else on the PBX */
	s = base_snap();
	snprintf(s.device_owner, sizeof(s.device_owner), "u2");
	assert_int_equal(decide(&w, &r, &s).status, DAS_DEVICE_NOT_FOUND);
	r = req_of(DOMAIN_OP_UNASSIGN, CUST, "u1", "d1", 0);
	assert_int_equal(decide(&w, &r, &s).status, DAS_DEVICE_NOT_FOUND);

	/* list checks rows 1-7 only */
	r = req_of(DOMAIN_OP_LIST, CUST, "u1", NULL, 0);
	s = base_snap();
	s.is_device_found = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_OK);
	s.is_user_found = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_USER_NOT_FOUND);
}

static void account_in_path(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w;
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1", 1);

	(void)state;
	r.account = ACCT;
	r.account_len = strlen(ACCT);
	w = who_tenant(ACCT);
	assert_int_equal(decide(&w, &r, &s).status, DAS_OK);

	/* customer belongs to another account: not found, for any caller */
	r.account = OTHER;
	r.account_len = strlen(OTHER);
	w = who_all();
	assert_int_equal(decide(&w, &r, &s).status, DAS_CUSTOMER_NOT_FOUND);
	/* a reseller of OTHER learns nothing about CUST: 404 as well */
	w = who_tenant(OTHER);
	assert_int_equal(decide(&w, &r, &s).status, DAS_CUSTOMER_NOT_FOUND);
	/* nor does a missing customer differ */
	s.is_customer_found = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_CUSTOMER_NOT_FOUND);
	/* a customer with no account under an account path */
	s = base_snap();
	s.customer_has_account = false;
	w = who_all();
	assert_int_equal(decide(&w, &r, &s).status, DAS_CUSTOMER_NOT_FOUND);
}

static void row_9_roles(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1", 1);
	struct domain_decision d;

	(void)state;
	s.has_role_uc_softphone = false;
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_MISSING_ROLES);
	assert_string_equal(d.detail, "customer_user_uc_softphone");
	s.has_role_uc = false;
	d = decide(&w, &r, &s);
	assert_string_equal(d.detail,
			    "customer_user_uc, customer_user_uc_softphone");
	s.has_role_uc_softphone = true;
	d = decide(&w, &r, &s);
	assert_string_equal(d.detail, "customer_user_uc");
	assert_int_equal(d.n_changes, 0);
	/* roles come before charges */
	s.seats_in_use = 2;
	assert_int_equal(decide(&w, &r, &s).status, DAS_MISSING_ROLES);
	/* unassign needs no roles */
	r = req_of(DOMAIN_OP_UNASSIGN, CUST, "u1", "d1", 0);
	assert_int_equal(decide(&w, &r, &s).status, DAS_OK);
}

static void first_assign_and_seats(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1",
					 DAS_CLIENT_MOBILE);
	struct domain_decision d;

	(void)state;
	/* a free seat: no charge, one change */
	s.seats_in_use = 1;
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_int_equal(d.n_changes, 1);
	assert_string_equal(d.changes[0].device, "d1");
	assert_string_equal(d.changes[0].user, "u1");
	assert_int_equal(d.changes[0].from_type, DAS_CLIENT_NONE);
	assert_int_equal(d.changes[0].to_type, DAS_CLIENT_MOBILE);
	assert_false(d.changes[0].is_charged);
	assert_false(d.is_charged);
	assert_int_equal(d.previous_type, DAS_CLIENT_NONE);

	/* seats full: 402 without consent, nothing changes */
	s.seats_in_use = 2;
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_CHARGES_NOT_ACCEPTED);
	assert_int_equal(d.n_changes, 0);
	/* over-full (seats reduced later) is the same */
	s.seats_in_use = 7;
	assert_int_equal(decide(&w, &r, &s).status, DAS_CHARGES_NOT_ACCEPTED);

	/* with consent: charged */
	r.is_charge_accepted = true;
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_true(d.is_charged);
	assert_true(d.changes[0].is_charged);

	/* unlimited seats never charge */
	s.is_seat_limited = false;
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_false(d.is_charged);

	/* zero included seats: the first one already needs consent */
	s = base_snap();
	s.included_seats = 0;
	r.is_charge_accepted = false;
	assert_int_equal(decide(&w, &r, &s).status, DAS_CHARGES_NOT_ACCEPTED);
}

static void idempotent_repeat(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1",
					 DAS_CLIENT_DESKTOP);
	struct domain_decision d;

	(void)state;
	s.device_type = DAS_CLIENT_DESKTOP;
	snprintf(s.user_devices[DAS_CLIENT_DESKTOP], DAS_ID_SIZE, "d1");
	s.seats_in_use = 2; /* full, yet a repeat needs no consent */
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_int_equal(d.n_changes, 0);
	assert_false(d.is_charged);
	assert_int_equal(d.previous_type, DAS_CLIENT_DESKTOP);
}

static void move_between_types(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1",
					 DAS_CLIENT_WEBRTC);
	struct domain_decision d;

	(void)state;
	s.device_type = DAS_CLIENT_DESKTOP;
	snprintf(s.user_devices[DAS_CLIENT_DESKTOP], DAS_ID_SIZE, "d1");
	s.seats_in_use = 2; /* a move never needs a seat */
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_int_equal(d.n_changes, 1);
	assert_int_equal(d.changes[0].from_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(d.changes[0].to_type, DAS_CLIENT_WEBRTC);
	assert_false(d.is_charged);
	assert_int_equal(d.previous_type, DAS_CLIENT_DESKTOP);
}

static void replace_in_type(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_ASSIGN, CUST, "u1", "d1",
					 DAS_CLIENT_DESKTOP);
	struct domain_decision d;

	(void)state;
	/* d2 holds desktop; d1 is unassigned */
	snprintf(s.user_devices[DAS_CLIENT_DESKTOP], DAS_ID_SIZE, "d2");
	s.seats_in_use = 2;
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_int_equal(d.n_changes, 2);
	/* the displaced device is released first */
	assert_string_equal(d.changes[0].device, "d2");
	assert_int_equal(d.changes[0].from_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(d.changes[0].to_type, DAS_CLIENT_NONE);
	assert_string_equal(d.changes[1].device, "d1");
	assert_int_equal(d.changes[1].from_type, DAS_CLIENT_NONE);
	assert_int_equal(d.changes[1].to_type, DAS_CLIENT_DESKTOP);
	assert_false(d.is_charged);

	/* move and replace at once: d1 on mobile goes to desktop held by d2 */
	snprintf(s.user_devices[DAS_CLIENT_MOBILE], DAS_ID_SIZE, "d1");
	s.device_type = DAS_CLIENT_MOBILE;
	d = decide(&w, &r, &s);
	assert_int_equal(d.n_changes, 2);
	assert_string_equal(d.changes[0].device, "d2");
	assert_int_equal(d.changes[1].from_type, DAS_CLIENT_MOBILE);
	assert_int_equal(d.changes[1].to_type, DAS_CLIENT_DESKTOP);
	assert_int_equal(d.previous_type, DAS_CLIENT_MOBILE);
}

static void unassign(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_principal w = who_all();
	struct domain_request r = req_of(DOMAIN_OP_UNASSIGN, CUST, "u1", "d1",
					 0);
	struct domain_decision d;

	(void)state;
	/* nothing assigned: idempotent success */
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_int_equal(d.n_changes, 0);
	assert_int_equal(d.previous_type, DAS_CLIENT_NONE);

	s.device_type = DAS_CLIENT_CRM;
	snprintf(s.user_devices[DAS_CLIENT_CRM], DAS_ID_SIZE, "d1");
	d = decide(&w, &r, &s);
	assert_int_equal(d.status, DAS_OK);
	assert_int_equal(d.n_changes, 1);
	assert_int_equal(d.changes[0].from_type, DAS_CLIENT_CRM);
	assert_int_equal(d.changes[0].to_type, DAS_CLIENT_NONE);
	assert_int_equal(d.previous_type, DAS_CLIENT_CRM);
}

static void owner_change(void **state)
{
	struct domain_snapshot s = base_snap();
	struct domain_change c;

	(void)state;
	/* no assignment: nothing to drop */
	assert_int_equal(domain_device_changed(&s, "d1", "u2", &c), 0);
	s.device_type = DAS_CLIENT_MOBILE;
	/* same owner: kept */
	assert_int_equal(domain_device_changed(&s, "d1", "u1", &c), 0);
	/* new owner: dropped, ledgered against the old owner */
	assert_int_equal(domain_device_changed(&s, "d1", "u2", &c), 1);
	assert_string_equal(c.user, "u1");
	assert_string_equal(c.device, "d1");
	assert_int_equal(c.from_type, DAS_CLIENT_MOBILE);
	assert_int_equal(c.to_type, DAS_CLIENT_NONE);
	/* deleted */
	assert_int_equal(domain_device_changed(&s, "d1", NULL, &c), 1);
	s.is_device_found = false;
	assert_int_equal(domain_device_changed(&s, "d1", NULL, &c), 0);
}

static void directory_authorization(void **state)
{
	struct domain_principal w = who_all();

	(void)state;
	assert_int_equal(domain_check_directory(&w, CUST, NULL), DAS_FORBIDDEN);
	w.scopes = DOMAIN_SCOPE_DIRECTORY;
	assert_int_equal(domain_check_directory(&w, CUST, NULL), DAS_OK);
	w = who_tenant(ACCT);
	w.scopes = DOMAIN_SCOPE_DIRECTORY;
	assert_int_equal(domain_check_directory(&w, CUST, ACCT), DAS_OK);
	assert_int_equal(domain_check_directory(&w, CUST, NULL), DAS_FORBIDDEN);
	assert_int_equal(domain_check_directory(&w, CUST, OTHER),
			 DAS_FORBIDDEN);
}

static void roles(void **state)
{
	const char *in[] = {"customer_user_uc_softphone", "customer_user_uc",
			    "admin", "customer_user_uc"};
	size_t lens[4];
	char out[DOMAIN_ROLES_SIZE], detail[DOMAIN_DETAIL_SIZE];
	const char *bad[] = {"ok", "not ok"};
	size_t bad_lens[] = {2, 6};

	(void)state;
	for (int i = 0; i < 4; i++)
		lens[i] = strlen(in[i]);
	assert_int_equal(domain_roles_normalize(in, lens, 4, out, detail), 0);
	assert_string_equal(out,
			    "admin customer_user_uc customer_user_uc_softphone");
	assert_true(domain_roles_contain(out, DOMAIN_ROLE_UC));
	assert_true(domain_roles_contain(out, DOMAIN_ROLE_UC_SOFTPHONE));
	assert_false(domain_roles_contain(out, "customer_user"));
	assert_false(domain_roles_contain("", DOMAIN_ROLE_UC));
	assert_false(domain_roles_contain("customer_user_uc_softphone",
					  DOMAIN_ROLE_UC));

	assert_int_equal(domain_roles_normalize(bad, bad_lens, 2, out, detail),
			 -1);
	assert_string_equal(detail, "invalid role 'not ok'");
	assert_int_equal(domain_roles_normalize(in, lens, 0, out, detail), 0);
	assert_string_equal(out, "");
	assert_int_equal(domain_roles_normalize(in, lens, DOMAIN_ROLES_MAX + 1,
						out, detail),
			 -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(validate_rows_2_and_3),
		cmocka_unit_test(quoted_values_are_bounded_and_printable),
		cmocka_unit_test(row_4_authorization),
		cmocka_unit_test(row_5_client_type),
		cmocka_unit_test(ledger_read_rows_4_to_6),
		cmocka_unit_test(rows_6_7_8_not_found),
		cmocka_unit_test(account_in_path),
		cmocka_unit_test(row_9_roles),
		cmocka_unit_test(first_assign_and_seats),
		cmocka_unit_test(idempotent_repeat),
		cmocka_unit_test(move_between_types),
		cmocka_unit_test(replace_in_type),
		cmocka_unit_test(unassign),
		cmocka_unit_test(owner_change),
		cmocka_unit_test(directory_authorization),
		cmocka_unit_test(roles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
