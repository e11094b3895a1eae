/*
 * A VFS over the default one that gathers what SQLite appends to a
 * write-ahead log and writes it when the log is synced, one call per
 * 124 KiB.
 *
 * SQLite writes each log frame with two calls (its 24-byte header, then
 * the page), so a group commit of 50 pages made 100 pwrite calls, each
 * paying the file system's per-call cost (2.5 us per frame against 0.6 us
 * for the same bytes in one call, measured on ext4). Only files opened as
 * a write-ahead log are wrapped; every other file is the default VFS's
 * own. Nothing durable changes: SQLite counts a log frame only once its
 * sync returned, and the gathered bytes are written before that sync is
 * made. A read, truncate, size or close of the log writes them first.
 *
 * This relies on synchronous=FULL (the store's setting): in WAL mode SQLite
 * then syncs the log before it publishes a commit to other connections,
 * which read the log through their own files. With synchronous NORMAL or
 * OFF a commit is published without a sync, so other connections could
 * read frames not yet written: never use this VFS then. A log that SQLite
 * pads to the sector size (a database file without "powersafe
 * overwrite") is written through, as the padding's end comes after the
 * sync (wal_append.c).
 */
#ifndef DAS_WAL_APPEND_H
#define DAS_WAL_APPEND_H

#include <sqlite3.h>

/*
 * Registers a new VFS (not the default) over real (NULL = the current
 * default one), with a name of its own; *out gets it, to pass its zName to
 * sqlite3_open_v2. Returns an SQLite result code.
 */
int wal_append_vfs_register(sqlite3_vfs *real, sqlite3_vfs **out);

/* Unregisters and frees it, once no connection uses it; NULL is a no-op. */
void wal_append_vfs_unregister(sqlite3_vfs *vfs);

#endif
