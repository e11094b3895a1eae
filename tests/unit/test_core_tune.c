/*
 * core_tune (service/grpc/core_tune): abseil's deadlock detection, which
 * Debian's build leaves on under every gRPC core lock, is found and turned
 * off. gpr_mu is an absl::Mutex in this gRPC, so a lock-order inversion
 * shows the difference: with detection on, abseil aborts the process
 * ("potential deadlock"); after core_tune, the same order runs through.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <grpc/grpc.h>
#include <grpc/support/sync.h>

#include "service/grpc/core_tune.h"

/* Locks a then b, then b then a: an order cycle, never a real deadlock. */
static void invert_lock_order(void)
{
	gpr_mu a, b;

	gpr_mu_init(&a);
	gpr_mu_init(&b);
	gpr_mu_lock(&a);
	gpr_mu_lock(&b);
	gpr_mu_unlock(&b);
	gpr_mu_unlock(&a);
	gpr_mu_lock(&b);
	gpr_mu_lock(&a);
	gpr_mu_unlock(&a);
	gpr_mu_unlock(&b);
	gpr_mu_destroy(&a);
	gpr_mu_destroy(&b);
}

/* The child's wait status after invert_lock_order, detection off or not. */
static int run_child(bool is_tuned)
{
	int status = -1;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* abseil's report goes to stderr: keep the test log quiet. */
		if (!freopen("/dev/null", "w", stderr))
			_exit(3);
		if (is_tuned && !core_tune_deadlock_detection_off())
			_exit(2);
		invert_lock_order();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void test_switch_found(void **state)
{
	(void)state;
	assert_true(core_tune_deadlock_detection_off());
}

static void test_inversion_runs_through_once_off(void **state)
{
	int st = run_child(true);

	(void)state;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/*
 * Without core_tune the same child aborts: detection is on in this build,
 * so the switch is what makes the difference (and what the profile's
 * GraphCycles was). A build of abseil with NDEBUG would exit 0 here too.
 */
static void test_inversion_aborts_as_built(void **state)
{
	int st = run_child(false);

	(void)state;
	printf("# without core_tune: %s %d\n",
	       WIFSIGNALED(st) ? "signal" : "exit",
	       WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
	assert_true(WIFSIGNALED(st));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* First: the switch is process-wide and children inherit it. */
		cmocka_unit_test(test_inversion_aborts_as_built),
		cmocka_unit_test(test_inversion_runs_through_once_off),
		cmocka_unit_test(test_switch_found),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
