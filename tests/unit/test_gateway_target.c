/* gateway/upstream/target.c: the --upstream value as a gRPC target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/upstream/target.h"

static void ok(const char *in, const char *want)
{
	char out[256], err[256];

	assert_int_equal(gw_upstream_target(in, out, sizeof(out), err,
					    sizeof(err)),
			 0);
	assert_string_equal(out, want);
}

static void bad(const char *in, const char *why)
{
	char out[256], err[256] = "";

	assert_int_equal(gw_upstream_target(in, out, sizeof(out), err,
					    sizeof(err)),
			 -1);
	assert_non_null(strstr(err, why));
}

static void single_targets_pass_through(void **state)
{
	(void)state;
	ok("127.0.0.1:50051", "127.0.0.1:50051");
	ok("localhost:50051", "localhost:50051");
	ok("server:50051", "server:50051");
	ok("dns:///server:50051", "dns:///server:50051");
	ok("ipv4:127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2");
	ok("unix:/run/das.sock", "unix:/run/das.sock");
}

static void lists_become_ip_targets(void **state)
{
	(void)state;
	ok("127.0.0.1:5001,127.0.0.1:5002", "ipv4:127.0.0.1:5001,127.0.0.1:5002");
	ok("localhost:5001,127.0.0.2:5002",
	   "ipv4:127.0.0.1:5001,127.0.0.2:5002");
	ok("[::1]:5001,[::1]:5002", "ipv6:[::1]:5001,[::1]:5002");
}

static void bad_lists(void **state)
{
	(void)state;
	bad("", "empty");
	bad("127.0.0.1:1,", "empty list entry");
	bad(",127.0.0.1:1", "empty list entry");
	bad("server1:1,server2:2", "dns:///");
	bad("127.0.0.1:1,[::1]:2", "mix");
	bad("127.0.0.1,127.0.0.1:2", "not IP:PORT");
	bad("127.0.0.1:x,127.0.0.1:2", "not IP:PORT");
	bad("1.2.3:1,127.0.0.1:2", "not IP:PORT");
	bad("[zz]:1,[::1]:2", "not IP:PORT");
}

static void too_long(void **state)
{
	char in[600], out[64], err[128];

	(void)state;
	memset(in, 0, sizeof(in));
	for (size_t o = 0; o + 16 < sizeof(in);)
		o += (size_t)snprintf(in + o, sizeof(in) - o, "%s127.0.0.1:1",
				      o ? "," : "");
	assert_int_equal(gw_upstream_target(in, out, sizeof(out), err,
					    sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "too long"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(single_targets_pass_through),
		cmocka_unit_test(lists_become_ip_targets),
		cmocka_unit_test(bad_lists),
		cmocka_unit_test(too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
