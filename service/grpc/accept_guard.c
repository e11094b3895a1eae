#include "accept_guard.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "observe.h"

#define WARN_EVERY_MS 10000

/* Descriptors from this number up are the reserve (INT_MAX: not started). */
static atomic_int reserve_from = INT_MAX;
static long room;
/* Taken only to accept a connection when no descriptor is left. */
static pthread_mutex_t spare_mu = PTHREAD_MUTEX_INITIALIZER;
static int spare_fd = -1;
static atomic_ullong n_refused;
static struct das_log_limit refused_limit;
/* accept_guard_watch's callback and its argument. */
typedef void watch_fn(void *arg, const struct sockaddr *addr,
		      unsigned addr_len);
static _Atomic(watch_fn *) watch;
static void *watch_arg;

/* The kernel's accept4, past any other definition (ours is below). */
static int kernel_accept4(int fd, struct sockaddr *addr, socklen_t *len,
			  int flags)
{
	return (int)syscall(SYS_accept4, fd, addr, len, flags);
}

/* accept(2), "Error handling": on Linux these are errors of the new
 * connection, already pending on it; the caller should try again. */
static bool is_connection_error(int e)
{
	switch (e) {
	case ENETDOWN:
	case EPROTO:
	case ENOPROTOOPT:
	case EHOSTDOWN:
	case ENONET:
	case EHOSTUNREACH:
	case EOPNOTSUPP:
	case ENETUNREACH:
	case EPERM:	   /* a firewall rule refused it */
	case ECONNABORTED: /* core takes it as EAGAIN: queued ones would wait */
		return true;
	default:
		return false;
	}
}

/* Closes a new connection with a reset (no TIME_WAIT kept for it). */
static void refuse(int fd, const char *why)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	unsigned long long n = atomic_fetch_add(&n_refused, 1) + 1;
	unsigned n_held;

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	obs_connection_refused();
	if (das_log_limit_take(&refused_limit, WARN_EVERY_MS, &n_held))
		das_log(DAS_LOG_WARN,
			"grpc: closing new connections as they arrive: %s "
			"(%llu so far)",
			why, n);
}

/*
 * No descriptor left: empties the queue of waiting connections, each
 * accepted into the spare descriptor and closed. Ends when the queue is
 * empty, or when another thread took the spare's number meanwhile.
 */
static void refuse_queued(int listen_fd)
{
	pthread_mutex_lock(&spare_mu);
	if (spare_fd < 0)
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	while (spare_fd >= 0) {
		close(spare_fd);
		int c = kernel_accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		int e = errno;
		if (c >= 0)
			refuse(c, "no file descriptor is left");
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (c < 0 && e != EINTR && !is_connection_error(e))
			break;
	}
	pthread_mutex_unlock(&spare_mu);
}

/* gRPC core's listener calls this one (accept_guard.h). Declared here:
 * <sys/socket.h> declares accept4 only under _GNU_SOURCE, and then with a
 * transparent union for addr. */
int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	socklen_t cap = len ? *len : 0;

	for (;;) {
		if (len)
			*len = cap;
		int c = kernel_accept4(fd, addr, len, flags);
		if (c >= 0) {
			if (c < atomic_load_explicit(&reserve_from,
						     memory_order_relaxed)) {
				watch_fn *fn = atomic_load_explicit(
					&watch, memory_order_acquire);
				if (fn && addr && len)
					fn(watch_arg, addr, *len < cap ? *len
								       : cap);
				return c;
			}
			refuse(c, "the server holds as many connections as "
				  "it may (--connection-limit, or the "
				  "open-files limit)");
			continue;
		}
		if (errno == EMFILE || errno == ENFILE) {
			refuse_queued(fd);
			errno = EAGAIN;
			return -1;
		}
		if (!is_connection_error(errno))
			return -1;
	}
}

void accept_guard_watch(watch_fn *fn, void *arg)
{
	if (fn)
		watch_arg = arg;
	atomic_store_explicit(&watch, fn, memory_order_release);
	if (!fn)
		watch_arg = NULL;
}

/* The number the next descriptor would get (the lowest free), or -1. */
static long lowest_free(void)
{
	int fd = fcntl(spare_fd, F_DUPFD_CLOEXEC, 0);

	if (fd >= 0)
		close(fd);
	return fd;
}

bool accept_guard_start(unsigned connection_limit, char *err, size_t err_size)
{
	struct rlimit rl;
	long next_fd;

	pthread_mutex_lock(&spare_mu);
	if (spare_fd < 0)
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	next_fd = spare_fd < 0 ? -1 : lowest_free();
	pthread_mutex_unlock(&spare_mu);
	if (next_fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		snprintf(err, err_size, "cannot open a spare descriptor: %s",
			 strerror(errno));
		return false;
	}
	rlim_t want = rl.rlim_cur;
	if (connection_limit) {
		want = (rlim_t)next_fd + connection_limit + ACCEPT_RESERVE_FDS;
		if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
			want = rl.rlim_max;
	}
	if (want != rl.rlim_cur) {
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			snprintf(err, err_size,
				 "cannot set the open-files limit to %llu: %s",
				 (unsigned long long)want, strerror(errno));
			return false;
		}
	}
	long limit = want > INT_MAX ? INT_MAX : (long)want;
	room = limit - ACCEPT_RESERVE_FDS - next_fd;
	if (room < 1) {
		snprintf(err, err_size,
			 "the open-files limit %ld leaves no room for "
			 "connections (first free descriptor %ld, %d kept)",
			 limit, next_fd, ACCEPT_RESERVE_FDS);
		return false;
	}
	if (connection_limit && room < (long)connection_limit)
		das_log(DAS_LOG_WARN,
			"the open-files limit %ld leaves room for %ld "
			"connections, fewer than --connection-limit %u (raise "
			"the hard limit: ulimit -Hn)",
			limit, room, connection_limit);
	atomic_store(&reserve_from, (int)(limit - ACCEPT_RESERVE_FDS));
	return true;
}

long accept_guard_room(void)
{
	return room;
}
