/*
 * Process-wide settings of the libraries under gRPC core that cost time on
 * every call and that core gives no channel argument for.
 */
#ifndef DAS_GRPC_CORE_TUNE_H
#define DAS_GRPC_CORE_TUNE_H

#include <stdbool.h>

/*
 * Turns off abseil's mutex deadlock detection. Debian builds abseil without
 * NDEBUG, so every absl::Mutex lock and unlock inside gRPC core records its
 * lock order in a global graph (absl GraphCycles, under one global spin
 * lock): ~8.5 k instructions of a Health/Check's ~79 k. The switch is
 * abseil's own SetMutexDeadlockDetectionMode(kIgnore), looked up at run
 * time because it is C++ and its name carries the build's inline namespace.
 * Returns true when the switch was found and set (false: abseil under
 * another name; nothing changed). Call before grpc_init().
 */
bool core_tune_deadlock_detection_off(void);

#endif
