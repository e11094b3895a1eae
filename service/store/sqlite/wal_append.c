#include "wal_append.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The gathered bytes of one log, at most this many (a batch of 64 moves
 * writes about 1 MiB); past it they are written and gathering restarts. */
#define GATHER_MAX (4u << 20)
#define GATHER_FIRST (64u << 10)

struct wa_vfs {
	sqlite3_vfs base; /* first: handed to SQLite */
	sqlite3_vfs *real;
	char name[48];
};

/* A write-ahead log: bytes gathered from start, len of them. */
struct wa_file {
	sqlite3_file base; /* first: handed to SQLite */
	sqlite3_file *real; /* the default VFS's file, after this struct */
	unsigned char *buf;
	size_t len, cap;
	sqlite3_int64 start;
	bool is_gathering; /* see wa_open */
};

/* The real file lies this far into SQLite's allocation. */
#define WA_FILE_SIZE ((sizeof(struct wa_file) + 15) & ~(size_t)15)

/*
 * Bytes per write: SQLite's unix VFS writes at most 128 KiB - 1 per call
 * (it masks the length to 17 bits, as no page is larger than 64 KiB), and
 * takes a longer write that stops short for a full disk.
 */
#define WRITE_MAX (124u << 10)

/* Writes what was gathered. Dropped on failure: SQLite is told at the
 * call that asked (a sync, read, ...) and rewrites from what it counts. */
static int gathered_write(struct wa_file *f)
{
	int rc = SQLITE_OK;

	for (size_t done = 0; rc == SQLITE_OK && done < f->len;) {
		size_t n = f->len - done < WRITE_MAX ? f->len - done
						      : WRITE_MAX;

		rc = f->real->pMethods->xWrite(f->real, f->buf + done, (int)n,
					       f->start +
						       (sqlite3_int64)done);
		done += n;
	}
	f->len = 0;
	return rc;
}

static bool gather_room(struct wa_file *f, size_t need)
{
	size_t cap = f->cap ? f->cap : GATHER_FIRST;
	unsigned char *buf;

	if (need <= f->cap)
		return true;
	if (need > GATHER_MAX)
		return false;
	while (cap < need)
		cap *= 2;
	if (cap > GATHER_MAX)
		cap = GATHER_MAX;
	buf = realloc(f->buf, cap);
	if (!buf)
		return false;
	f->buf = buf;
	f->cap = cap;
	return true;
}

static int wa_write(sqlite3_file *file, const void *data, int amt,
		    sqlite3_int64 off)
{
	struct wa_file *f = (struct wa_file *)file;
	int rc;

	if (amt <= 0 || !f->is_gathering)
		return f->real->pMethods->xWrite(f->real, data, amt, off);
	if (f->len > 0) {
		sqlite3_int64 end = f->start + (sqlite3_int64)f->len;

		/* A frame rewritten within the gathered ones. */
		if (off >= f->start && off + amt <= end) {
			memcpy(f->buf + (off - f->start), data, (size_t)amt);
			return SQLITE_OK;
		}
		if (off == end && gather_room(f, f->len + (size_t)amt)) {
			memcpy(f->buf + f->len, data, (size_t)amt);
			f->len += (size_t)amt;
			return SQLITE_OK;
		}
		rc = gathered_write(f);
		if (rc != SQLITE_OK)
			return rc;
	}
	if (!gather_room(f, (size_t)amt))
		return f->real->pMethods->xWrite(f->real, data, amt, off);
	memcpy(f->buf, data, (size_t)amt);
	f->len = (size_t)amt;
	f->start = off;
	return SQLITE_OK;
}

static int wa_read(sqlite3_file *file, void *data, int amt,
		   sqlite3_int64 off)
{
	struct wa_file *f = (struct wa_file *)file;

	if (f->len > 0 && off < f->start + (sqlite3_int64)f->len &&
	    off + amt > f->start) {
		int rc = gathered_write(f);

		if (rc != SQLITE_OK)
			return rc;
	}
	return f->real->pMethods->xRead(f->real, data, amt, off);
}

static int wa_sync(sqlite3_file *file, int flags)
{
	struct wa_file *f = (struct wa_file *)file;
	int rc = gathered_write(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xSync(f->real, flags);
}

static int wa_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct wa_file *f = (struct wa_file *)file;
	int rc = gathered_write(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xTruncate(f->real, size);
}

static int wa_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct wa_file *f = (struct wa_file *)file;
	int rc = gathered_write(f);

	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xFileSize(f->real, size);
}

static int wa_close(sqlite3_file *file)
{
	struct wa_file *f = (struct wa_file *)file;
	int rc = gathered_write(f);
	int close_rc = f->real->pMethods->xClose(f->real);

	free(f->buf);
	f->buf = NULL;
	f->cap = 0;
	return rc != SQLITE_OK ? rc : close_rc;
}

static int wa_lock(sqlite3_file *file, int lock)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xLock(f->real, lock);
}

static int wa_unlock(sqlite3_file *file, int lock)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xUnlock(f->real, lock);
}

static int wa_check_reserved(sqlite3_file *file, int *out)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wa_file_control(sqlite3_file *file, int op, void *arg)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wa_sector_size(sqlite3_file *file)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xSectorSize(f->real);
}

static int wa_device_characteristics(sqlite3_file *file)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int wa_shm_map(sqlite3_file *file, int pg, int pgsz, int extend,
		      void volatile **out)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, out);
}

static int wa_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void wa_shm_barrier(sqlite3_file *file)
{
	struct wa_file *f = (struct wa_file *)file;

	f->real->pMethods->xShmBarrier(f->real);
}

static int wa_shm_unmap(sqlite3_file *file, int delete_flag)
{
	struct wa_file *f = (struct wa_file *)file;

	return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

/* Version 2: SQLite never maps a log into memory (xFetch is for the
 * database file), so every read of it comes through wa_read. */
static const sqlite3_io_methods wa_io = {
	.iVersion = 2,
	.xClose = wa_close,
	.xRead = wa_read,
	.xWrite = wa_write,
	.xTruncate = wa_truncate,
	.xSync = wa_sync,
	.xFileSize = wa_file_size,
	.xLock = wa_lock,
	.xUnlock = wa_unlock,
	.xCheckReservedLock = wa_check_reserved,
	.xFileControl = wa_file_control,
	.xSectorSize = wa_sector_size,
	.xDeviceCharacteristics = wa_device_characteristics,
	.xShmMap = wa_shm_map,
	.xShmLock = wa_shm_lock,
	.xShmBarrier = wa_shm_barrier,
	.xShmUnmap = wa_shm_unmap,
};

static sqlite3_vfs *real_of(sqlite3_vfs *vfs)
{
	return ((struct wa_vfs *)vfs)->real;
}

/* A log is wrapped; every other file is the real VFS's own, opened in
 * place (szOsFile leaves it room). */
static int wa_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file,
		   int flags, int *out_flags)
{
	sqlite3_vfs *real = real_of(vfs);
	struct wa_file *f = (struct wa_file *)file;
	int rc;

	if (!(flags & SQLITE_OPEN_WAL))
		return real->xOpen(real, name, file, flags, out_flags);
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)((char *)f + WA_FILE_SIZE);
	rc = real->xOpen(real, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK || !f->real->pMethods) {
		f->base.pMethods = NULL;
		return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
	}
	/*
	 * Without "powersafe overwrite" on the database file SQLite pads each
	 * commit to the sector size and syncs in the middle of the padding:
	 * the padding's rest is written after the commit's last sync, yet
	 * published with it. Such a log is written through. The database
	 * file's claim is read the way the unix VFS makes it: the log's own
	 * (the same VFS and device) and the database name's "psow" URI
	 * parameter (the log is opened without it).
	 */
	f->is_gathering =
		(f->real->pMethods->xDeviceCharacteristics(f->real) &
		 SQLITE_IOCAP_POWERSAFE_OVERWRITE) &&
		sqlite3_uri_boolean(name, "psow", 1);
	f->base.pMethods = &wa_io;
	return SQLITE_OK;
}

static int wa_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	return real_of(vfs)->xDelete(real_of(vfs), name, sync_dir);
}

static int wa_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	return real_of(vfs)->xAccess(real_of(vfs), name, flags, out);
}

static int wa_full_pathname(sqlite3_vfs *vfs, const char *name, int n,
			    char *out)
{
	return real_of(vfs)->xFullPathname(real_of(vfs), name, n, out);
}

static void *wa_dl_open(sqlite3_vfs *vfs, const char *name)
{
	return real_of(vfs)->xDlOpen(real_of(vfs), name);
}

static void wa_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
	real_of(vfs)->xDlError(real_of(vfs), n, out);
}

static void (*wa_dl_sym(sqlite3_vfs *vfs, void *lib, const char *sym))(void)
{
	return real_of(vfs)->xDlSym(real_of(vfs), lib, sym);
}

static void wa_dl_close(sqlite3_vfs *vfs, void *lib)
{
	real_of(vfs)->xDlClose(real_of(vfs), lib);
}

static int wa_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	return real_of(vfs)->xRandomness(real_of(vfs), n, out);
}

static int wa_sleep(sqlite3_vfs *vfs, int us)
{
	return real_of(vfs)->xSleep(real_of(vfs), us);
}

static int wa_current_time(sqlite3_vfs *vfs, double *out)
{
	return real_of(vfs)->xCurrentTime(real_of(vfs), out);
}

static int wa_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	return real_of(vfs)->xGetLastError(real_of(vfs), n, out);
}

static int wa_current_time_i64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	sqlite3_vfs *real = real_of(vfs);

	if (real->iVersion >= 2 && real->xCurrentTimeInt64)
		return real->xCurrentTimeInt64(real, out);
	double now = 0;
	int rc = real->xCurrentTime(real, &now);

	*out = (sqlite3_int64)(now * 86400000.0);
	return rc;
}

int wal_append_vfs_register(sqlite3_vfs *real, sqlite3_vfs **out)
{
	static atomic_uint n_made;
	struct wa_vfs *v;
	int rc;

	*out = NULL;
	if (!real)
		real = sqlite3_vfs_find(NULL);
	if (!real)
		return SQLITE_ERROR;
	v = calloc(1, sizeof(*v));
	if (!v)
		return SQLITE_NOMEM;
	v->real = real;
	snprintf(v->name, sizeof(v->name), "das-wal-append-%u",
		 atomic_fetch_add(&n_made, 1));
	v->base.iVersion = 2;
	v->base.szOsFile = (int)WA_FILE_SIZE + real->szOsFile;
	v->base.mxPathname = real->mxPathname;
	v->base.zName = v->name;
	v->base.xOpen = wa_open;
	v->base.xDelete = wa_delete;
	v->base.xAccess = wa_access;
	v->base.xFullPathname = wa_full_pathname;
	v->base.xDlOpen = wa_dl_open;
	v->base.xDlError = wa_dl_error;
	v->base.xDlSym = wa_dl_sym;
	v->base.xDlClose = wa_dl_close;
	v->base.xRandomness = wa_randomness;
	v->base.xSleep = wa_sleep;
	v->base.xCurrentTime = wa_current_time;
	v->base.xGetLastError = wa_last_error;
	v->base.xCurrentTimeInt64 = wa_current_time_i64;
	rc = sqlite3_vfs_register(&v->base, 0);
	if (rc != SQLITE_OK) {
		free(v);
		return rc;
	}
	*out = &v->base;
	return SQLITE_OK;
}

void wal_append_vfs_unregister(sqlite3_vfs *vfs)
{
	if (!vfs)
		return;
	sqlite3_vfs_unregister(vfs);
	free(vfs);
}
