/*
 * The server's accept4 (service/grpc/accept_guard.h) on a real listener in
 * this process: connections past the limit are reset as they are accepted,
 * and with no descriptor left the queue of waiting connections is emptied
 * (each reset) and EAGAIN returned, so gRPC core keeps its listener; once
 * descriptors are free again, connections are accepted. (The server under a
 * connection flood: integration.server_attacks connection_flood_bounded.)
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "service/grpc/accept_guard.h"

/* The server's (accept_guard.c); <sys/socket.h> declares it only under
 * _GNU_SOURCE. */
int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

#define CLIENTS 6

static int listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 64), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static int client(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* The server reset this client's connection. */
static bool is_reset(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	if (poll(&p, 1, 2000) != 1)
		return false;
	return recv(fd, &c, 1, 0) < 0 && errno == ECONNRESET;
}

static int accept_one(int lfd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	return accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
}

/* --connection-limit 2: the third connection and those after it are reset
 * as they are accepted; the first two are the caller's. */
static void past_the_limit_reset(void **state)
{
	char err[256];
	int port, lfd = listener(&port), c[CLIENTS], s[2];

	(void)state;
	for (int i = 0; i < CLIENTS; i++)
		c[i] = client(port);
	assert_true(accept_guard_start(2, err, sizeof(err)));
	assert_int_equal(accept_guard_room(), 2);
	s[0] = accept_one(lfd);
	s[1] = accept_one(lfd);
	assert_true(s[0] >= 0 && s[1] >= 0);
	errno = 0;
	assert_int_equal(accept_one(lfd), -1);
	assert_int_equal(errno, EAGAIN);
	for (int i = 2; i < CLIENTS; i++)
		assert_true(is_reset(c[i]));
	assert_int_equal(send(c[0], "x", 1, MSG_NOSIGNAL), 1);
	for (int i = 0; i < CLIENTS; i++)
		close(c[i]);
	close(s[0]);
	close(s[1]);
	close(lfd);
}

/*
 * Every descriptor in use (EMFILE): the waiting connections are reset,
 * accept4 says EAGAIN (not EMFILE, which would end core's listener); with
 * descriptors back, the next connection is accepted.
 */
static void out_of_descriptors_keeps_listening(void **state)
{
	char err[256];
	struct rlimit rl, full;
	int port, lfd = listener(&port), c[CLIENTS];

	(void)state;
	/* Room again after the test before (it lowered the limit). */
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4096
			      ? 4096
			      : rl.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_true(accept_guard_start(0, err, sizeof(err)));
	for (int i = 0; i < CLIENTS; i++)
		c[i] = client(port);
	/* The lowest free number is the limit: nothing more can open. */
	int lowest = dup(0);
	assert_true(lowest >= 0);
	full = rl;
	full.rlim_cur = (rlim_t)lowest + 1;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &full), 0);
	errno = 0;
	assert_int_equal(dup(0), -1);
	assert_int_equal(errno, EMFILE);

	errno = 0;
	assert_int_equal(accept_one(lfd), -1);
	assert_int_equal(errno, EAGAIN);
	for (int i = 0; i < CLIENTS; i++)
		assert_true(is_reset(c[i]));

	close(lowest);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	int late = client(port);
	int s = accept_one(lfd);
	assert_true(s >= 0);
	assert_int_equal(send(late, "x", 1, MSG_NOSIGNAL), 1);
	close(s);
	close(late);
	for (int i = 0; i < CLIENTS; i++)
		close(c[i]);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(past_the_limit_reset),
		cmocka_unit_test(out_of_descriptors_keeps_listening),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
