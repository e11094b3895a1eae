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
	bad("127.0.0.1,127.0.0.1:2", "not HOST:PORT");
	bad("127.0.0.1:x,127.0.0.1:2", "not HOST:PORT");
	bad("1.2.3:1,127.0.0.1:2", "not an IPv4 address");
	bad("[zz]:1,[::1]:2", "not an IPv6 address");
}

/* Issue 9 item 8: IP literals through inet_pton, names through
 * getaddrinfo, ports 1..65535; each failure is one line. */
static void unusable_upstreams_are_refused(void **state)
{
	(void)state;
	bad("999.1.1.1:50051", "'999.1.1.1' is not an IPv4 address");
	bad("1.2.3:50051", "not an IPv4 address");
	bad("127.0.0.1:0", "not HOST:PORT");
	bad("127.0.0.1:65536", "not HOST:PORT");
	bad("127.0.0.1:", "not HOST:PORT");
	bad("127.0.0.1", "not HOST:PORT");
	bad("[::1::2]:50051", "not an IPv6 address");
	bad("[]:50051", "not HOST:PORT");
	bad("no-such-host.invalid:50051", "cannot resolve 'no-such-host.invalid'");
	bad("bad host:50051", "not a host name");
	bad("ipv4:999.1.1.1:1", "not an IPv4 address");
	bad("ipv4:[::1]:1", "mix");
	bad("dns:///bad host:1", "not a host name");
	bad("dns:///name", "not HOST:PORT");
	bad("dns://8.8.8.8/name:1", "authority");
	bad("http://x:1", "unknown scheme");
	bad("unix:", "empty unix path");
	bad("999.1.1.1:1,127.0.0.1:2", "not an IPv4 address");
	ok("[::1]:50051", "[::1]:50051");
	ok("ipv6:[::1]:1", "ipv6:[::1]:1");
	ok("dns:///localhost:50051", "dns:///localhost:50051");
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
		cmocka_unit_test(unusable_upstreams_are_refused),
		cmocka_unit_test(too_long),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
