/*
 * The flood guard's reading of gRPC peer strings: the key a connection is
 * counted and closed under; and its count of streams held without being
 * served. (Counting and closing run against real sockets in
 * integration.server_attacks.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "service/grpc/flood_guard.h"

static void ipv4(void **state)
{
	struct flood_peer p;
	static const uint8_t lo[4] = {127, 0, 0, 1};

	(void)state;
	assert_true(flood_peer_parse("ipv4:127.0.0.1:4242", &p));
	assert_true(p.is_known);
	assert_int_equal(p.family, 4);
	assert_int_equal(p.port, 4242);
	assert_memory_equal(p.addr, lo, 4);
	assert_true(flood_peer_parse("ipv4:10.1.2.3:65535", &p));
	assert_int_equal(p.port, 65535);
}

static void ipv6_forms(void **state)
{
	struct flood_peer a, b, c;
	static const uint8_t one[16] = {[15] = 1};

	(void)state;
	assert_true(flood_peer_parse("ipv6:[::1]:50051", &a));
	assert_int_equal(a.family, 6);
	assert_int_equal(a.port, 50051);
	assert_memory_equal(a.addr, one, 16);
	/* Percent-encoded brackets, and a zone: the same connection key. */
	assert_true(flood_peer_parse("ipv6:%5B::1%5D:50051", &b));
	assert_true(flood_peer_parse("ipv6:[::1%25lo]:50051", &c));
	assert_memory_equal(&a, &b, sizeof(a));
	assert_memory_equal(&a, &c, sizeof(a));
}

/* A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6; the socket
 * found by getpeername may say either, so both are one key. */
static void ipv4_mapped_is_ipv4(void **state)
{
	struct flood_peer v4, mapped;

	(void)state;
	assert_true(flood_peer_parse("ipv4:192.0.2.7:1000", &v4));
	assert_true(flood_peer_parse("ipv6:[::ffff:192.0.2.7]:1000", &mapped));
	assert_int_equal(mapped.family, 4);
	assert_memory_equal(&v4, &mapped, sizeof(v4));
}

static void other_forms_refused(void **state)
{
	static const char *const bad[] = {
		"unix:/tmp/sock",
		"ipv4:127.0.0.1",
		"ipv4:127.0.0.1:",
		"ipv4:127.0.0.1:65536",
		"ipv4:127.0.0.1:123456",
		"ipv4:127.0.0.1:12a",
		"ipv4:localhost:80",
		"ipv4:",
		"ipv6:::1:80",
		"ipv6:[::1]",
		"ipv6:[::1]80",
		"ipv6:[zz::1]:80",
		"",
		"ipv4:127.0.0.1:80:80",
		("ipv6:[::1]:12345678901234567890123456789012345678901234567890"
		 "12345678901234567890123456789012345678901234567890123456789"),
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct flood_peer p;
		p.is_known = true;
		assert_false(flood_peer_parse(bad[i], &p));
		assert_false(p.is_known);
	}
}

/*
 * Streams held in core (flood_stall_held), for a connection that started
 * 100 streams by the old look, 60 of them ended since; the workers hold
 * 10. Those left are held either way, or, counting only streams without a
 * request, as many as lack one.
 */
static void stall_held_counts(void **state)
{
	const uint64_t then = 100;
	struct flood_stall_look now = {
		.started = 130, .ended = 60, .received = 130};

	(void)state;
	/* Every request in: the 30 wait for a worker, or their end is not
	 * counted yet. Held for the long rule, not for the short one. */
	assert_int_equal(flood_stall_held(then, &now, 10, 0, false), 30);
	assert_int_equal(flood_stall_held(then, &now, 10, 0, true), 0);
	/* 20 of the streams started then have sent no request. */
	now.received = 80;
	assert_int_equal(flood_stall_held(then, &now, 10, 0, true), 20);
	/* 50 of those requests are a streaming call's past its first: they
	 * speak for no other stream (more_requests). */
	now.received = 130;
	assert_int_equal(flood_stall_held(then, &now, 10, 50, true), 20);
	assert_int_equal(flood_stall_held(then, &now, 10, 500, true), 30);
	/* No more than are neither ended nor taken. */
	now.received = 0;
	assert_int_equal(flood_stall_held(then, &now, 10, 0, true), 30);
	/* Streams reset without a request end: not held. */
	now.ended = 100;
	assert_int_equal(flood_stall_held(then, &now, 0, 0, true), 0);
	assert_int_equal(flood_stall_held(then, &now, 0, 0, false), 0);
	/* Counters never make it negative (a look of a reused id). */
	now.ended = 90;
	assert_int_equal(flood_stall_held(then, &now, 20, 0, false), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ipv4),
		cmocka_unit_test(ipv6_forms),
		cmocka_unit_test(ipv4_mapped_is_ipv4),
		cmocka_unit_test(other_forms_refused),
		cmocka_unit_test(stall_held_counts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
