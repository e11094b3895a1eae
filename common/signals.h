#ifndef DAS_COMMON_SIGNALS_H
#define DAS_COMMON_SIGNALS_H

#include <signal.h>

/*
 * The programs' signal discipline: SIGTERM, SIGINT and SIGHUP are blocked
 * in the calling thread (call it before starting any thread, so every
 * thread, gRPC's included, inherits the mask) and set in *set for
 * sigwait; SIGPIPE is ignored, so a peer that went away is an error on
 * the write, not the end of the process.
 */
void das_signals_block(sigset_t *set);

#endif
