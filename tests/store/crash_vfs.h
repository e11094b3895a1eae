/*
 * A test VFS in the manner of SQLite's crash-test VFS (src/test6.c): it
 * wraps SQLite's "unix-excl" VFS (the store's own over a file it holds
 * alone), passes every call through, and remembers, per
 * file, what each write since that file's last sync overwrote. Power loss
 * at event N (writes and syncs are events, counted from crash_vfs_arm):
 * before performing it, every write that no sync of its file covered is
 * undone (the file gets back the bytes and size it had at its last sync),
 * and the process ends at once with _exit(0) — so run the workload in a
 * child process. Also fails the Nth sync on request (crash_vfs_fail_sync)
 * without losing power, for the group-commit failure path.
 *
 * What it does not model: directory entries (a file created or deleted
 * since the last directory sync survives), torn sectors (an unsynced write
 * is dropped whole, never kept in part), the log's index (in memory,
 * rebuilt from the WAL by the first connection after a crash).
 * Process-wide, thread-safe.
 */
#ifndef DAS_TESTS_CRASH_VFS_H
#define DAS_TESTS_CRASH_VFS_H

#include <stdbool.h>

/* Registers the VFS as the default one. Returns 0 or an SQLite code. */
int crash_vfs_register(void);

/* Power is lost at event crash_at (1 = the next write or sync); 0: never.
 * Resets the event count. */
void crash_vfs_arm(unsigned long crash_at);

/* Events (writes and syncs) since the last crash_vfs_arm. */
unsigned long crash_vfs_events(void);

/* The nth sync from now (1 = the next) fails with SQLITE_IOERR_FSYNC and
 * leaves its file's unsynced writes in place; 0 disarms. */
void crash_vfs_fail_sync(unsigned long nth);

/* The nth event (write or sync) from now (1 = the next) fails, as a disk
 * error would (SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC), without writing or
 * syncing; 0 disarms. */
void crash_vfs_fail_event(unsigned long nth);

/* Events counted since the process started (for crash_vfs_fail_event). */
unsigned long crash_vfs_all_events(void);

/* Syncs that failed on request since the process started. */
unsigned long crash_vfs_failed_syncs(void);

/* While on, every sync waits until it is turned off, as on a disk that
 * stops answering (then the sync goes ahead as usual). */
void crash_vfs_hold_syncs(bool on);

/* Syncs waiting now (crash_vfs_hold_syncs). */
unsigned long crash_vfs_held_syncs(void);

#endif
