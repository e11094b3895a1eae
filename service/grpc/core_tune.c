#include "core_tune.h"

#include <dlfcn.h>
#include <stddef.h>

/*
 * absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle), mangled, under
 * the inline namespaces we know: Debian's, upstream's LTS 2022-06-23 and
 * none. OnDeadlockCycle is an int-sized enum class; kIgnore is 0.
 */
static const char *const set_mode_names[] = {
	"_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
	"_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
	"_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
};
#define ABSL_ON_DEADLOCK_CYCLE_IGNORE 0

bool core_tune_deadlock_detection_off(void)
{
	for (size_t i = 0;
	     i < sizeof(set_mode_names) / sizeof(set_mode_names[0]); i++) {
		void *sym = dlsym(RTLD_DEFAULT, set_mode_names[i]);
		void (*set_mode)(int);

		if (!sym)
			continue;
		/* POSIX: a dlsym result may be converted to a function pointer. */
		*(void **)&set_mode = sym;
		set_mode(ABSL_ON_DEADLOCK_CYCLE_IGNORE);
		return true;
	}
	return false;
}
