#include "crash_vfs.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

/* What one unsynced write or truncate replaced. */
struct undo {
	struct undo *prev;      /* older record of the same file */
	sqlite3_int64 offset;   /* where old bytes go back */
	sqlite3_int64 old_size; /* the file's size before */
	int len;
	unsigned char old[];    /* len bytes (zeros past the old end) */
};

struct crash_file {
	sqlite3_file base; /* first: handed to SQLite */
	struct crash_file *next; /* the open-files list */
	struct undo *undo;  /* newest first */
	sqlite3_file *real; /* the wrapped file, allocated after this */
};

static sqlite3_vfs crash_vfs;
static sqlite3_vfs *real_vfs;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct crash_file *open_files;
static unsigned long crash_at, events, fail_sync_at, syncs_seen,
	failed_syncs, all_events, fail_event_at;
/* crash_vfs_hold_syncs: held syncs wait on is_released. */
static pthread_cond_t is_released = PTHREAD_COND_INITIALIZER;
static bool is_holding_syncs;
static unsigned long held_syncs;

static void undo_free_all(struct crash_file *f)
{
	while (f->undo) {
		struct undo *u = f->undo;

		f->undo = u->prev;
		free(u);
	}
}

/* Puts every open file back to its state at its last sync. Lock held. */
static void lose_power(void)
{
	for (struct crash_file *f = open_files; f; f = f->next) {
		for (struct undo *u = f->undo; u; u = u->prev) {
			if (u->len > 0)
				f->real->pMethods->xWrite(f->real, u->old,
							  u->len, u->offset);
			f->real->pMethods->xTruncate(f->real, u->old_size);
		}
	}
	_exit(0);
}

/*
 * Counts one event; loses power when it is the armed one. Returns true
 * when this event is to fail instead. Lock held.
 */
static bool event(void)
{
	events++;
	all_events++;
	if (crash_at && events >= crash_at)
		lose_power();
	if (fail_event_at && all_events >= fail_event_at) {
		fail_event_at = 0;
		return true;
	}
	return false;
}

static int c_close(sqlite3_file *file)
{
	struct crash_file *f = (struct crash_file *)file;
	int rc;

	pthread_mutex_lock(&mu);
	for (struct crash_file **p = &open_files; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			break;
		}
	undo_free_all(f);
	pthread_mutex_unlock(&mu);
	rc = f->real->pMethods->xClose(f->real);
	return rc;
}

static int c_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xRead(f->real, buf, amt, off);
}

static int c_write(sqlite3_file *file, const void *buf, int amt,
		   sqlite3_int64 off)
{
	struct crash_file *f = (struct crash_file *)file;
	struct undo *u;
	sqlite3_int64 size = 0;
	int rc;

	pthread_mutex_lock(&mu);
	if (event()) {
		pthread_mutex_unlock(&mu);
		return SQLITE_IOERR_WRITE;
	}
	u = calloc(1, sizeof(*u) + (size_t)amt);
	if (!u) {
		pthread_mutex_unlock(&mu);
		return SQLITE_NOMEM;
	}
	f->real->pMethods->xFileSize(f->real, &size);
	u->offset = off;
	u->old_size = size;
	u->len = amt;
	if (off < size) {
		/* A short read fills the rest with zeros: fine, the truncate
		 * back to old_size drops what lay past the old end. */
		rc = f->real->pMethods->xRead(f->real, u->old, amt, off);
		if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
			free(u);
			pthread_mutex_unlock(&mu);
			return rc;
		}
	} else {
		u->len = 0; /* all past the end: the truncate undoes it */
	}
	u->prev = f->undo;
	f->undo = u;
	rc = f->real->pMethods->xWrite(f->real, buf, amt, off);
	pthread_mutex_unlock(&mu);
	return rc;
}

static int c_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct crash_file *f = (struct crash_file *)file;
	sqlite3_int64 old_size = 0;
	struct undo *u;
	int rc, len;

	pthread_mutex_lock(&mu);
	f->real->pMethods->xFileSize(f->real, &old_size);
	len = old_size > size ? (int)(old_size - size) : 0;
	u = calloc(1, sizeof(*u) + (size_t)len);
	if (!u) {
		pthread_mutex_unlock(&mu);
		return SQLITE_NOMEM;
	}
	u->offset = size;
	u->old_size = old_size;
	u->len = len;
	if (len > 0)
		f->real->pMethods->xRead(f->real, u->old, len, size);
	u->prev = f->undo;
	f->undo = u;
	rc = f->real->pMethods->xTruncate(f->real, size);
	pthread_mutex_unlock(&mu);
	return rc;
}

static int c_sync(sqlite3_file *file, int flags)
{
	struct crash_file *f = (struct crash_file *)file;
	int rc;

	pthread_mutex_lock(&mu);
	while (is_holding_syncs) {
		held_syncs++;
		pthread_cond_wait(&is_released, &mu);
		held_syncs--;
	}
	syncs_seen++;
	if (event() || (fail_sync_at && syncs_seen >= fail_sync_at)) {
		fail_sync_at = 0;
		failed_syncs++;
		pthread_mutex_unlock(&mu);
		return SQLITE_IOERR_FSYNC;
	}
	rc = f->real->pMethods->xSync(f->real, flags);
	if (rc == SQLITE_OK)
		undo_free_all(f); /* all of it is durable now */
	pthread_mutex_unlock(&mu);
	return rc;
}

static int c_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xFileSize(f->real, size);
}

static int c_lock(sqlite3_file *file, int lock)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xLock(f->real, lock);
}

static int c_unlock(sqlite3_file *file, int lock)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xUnlock(f->real, lock);
}

static int c_check_reserved(sqlite3_file *file, int *out)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int c_file_control(sqlite3_file *file, int op, void *arg)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int c_sector_size(sqlite3_file *file)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xSectorSize(f->real);
}

static int c_device_characteristics(sqlite3_file *file)
{
	struct crash_file *f = (struct crash_file *)file;

	/*
	 * No claims of atomic or safe-append writes: SQLite must sync. Power-
	 * safe overwrite stays as the real file says (the unix VFS claims
	 * it): a lost write is dropped whole here and never tears the bytes
	 * around it, which is what the claim means, and SQLite then lays out
	 * and syncs its log as it does in the programs (no sector padding).
	 */
	return f->real->pMethods->xDeviceCharacteristics(f->real) &
	       ~(SQLITE_IOCAP_SAFE_APPEND | SQLITE_IOCAP_SEQUENTIAL |
		 SQLITE_IOCAP_ATOMIC | SQLITE_IOCAP_BATCH_ATOMIC);
}

static int c_shm_map(sqlite3_file *file, int pg, int pgsz, int extend,
		     void volatile **out)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, out);
}

static int c_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void c_shm_barrier(sqlite3_file *file)
{
	struct crash_file *f = (struct crash_file *)file;

	f->real->pMethods->xShmBarrier(f->real);
}

static int c_shm_unmap(sqlite3_file *file, int delete_flag)
{
	struct crash_file *f = (struct crash_file *)file;

	return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

/* Version 2: no xFetch, so SQLite reads through xRead (no mmap). */
static const sqlite3_io_methods crash_io = {
	.iVersion = 2,
	.xClose = c_close,
	.xRead = c_read,
	.xWrite = c_write,
	.xTruncate = c_truncate,
	.xSync = c_sync,
	.xFileSize = c_file_size,
	.xLock = c_lock,
	.xUnlock = c_unlock,
	.xCheckReservedLock = c_check_reserved,
	.xFileControl = c_file_control,
	.xSectorSize = c_sector_size,
	.xDeviceCharacteristics = c_device_characteristics,
	.xShmMap = c_shm_map,
	.xShmLock = c_shm_lock,
	.xShmBarrier = c_shm_barrier,
	.xShmUnmap = c_shm_unmap,
};

static int c_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file,
		  int flags, int *out_flags)
{
	struct crash_file *f = (struct crash_file *)file;
	int rc;

	(void)vfs;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
	if (rc != SQLITE_OK || !f->real->pMethods) {
		f->base.pMethods = NULL;
		return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
	}
	f->base.pMethods = &crash_io;
	pthread_mutex_lock(&mu);
	f->next = open_files;
	open_files = f;
	pthread_mutex_unlock(&mu);
	return SQLITE_OK;
}

static int c_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int c_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int c_full_pathname(sqlite3_vfs *vfs, const char *name, int n,
			   char *out)
{
	(void)vfs;
	return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static int c_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xRandomness(real_vfs, n, out);
}

static int c_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs->xSleep(real_vfs, us);
}

static int c_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs->xCurrentTime(real_vfs, out);
}

static int c_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs->xGetLastError(real_vfs, n, out);
}

static int c_current_time_i64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int crash_vfs_register(void)
{
	if (real_vfs)
		return SQLITE_OK;
	/* What the store runs on by default (sqlite_store.c, base_vfs). */
	real_vfs = sqlite3_vfs_find("unix-excl");
	if (!real_vfs)
		real_vfs = sqlite3_vfs_find(NULL);
	if (!real_vfs)
		return SQLITE_ERROR;
	crash_vfs.iVersion = 2;
	crash_vfs.szOsFile = (int)sizeof(struct crash_file) + real_vfs->szOsFile;
	crash_vfs.mxPathname = real_vfs->mxPathname;
	crash_vfs.zName = "das-crash";
	crash_vfs.xOpen = c_open;
	crash_vfs.xDelete = c_delete;
	crash_vfs.xAccess = c_access;
	crash_vfs.xFullPathname = c_full_pathname;
	crash_vfs.xRandomness = c_randomness;
	crash_vfs.xSleep = c_sleep;
	crash_vfs.xCurrentTime = c_current_time;
	crash_vfs.xGetLastError = c_last_error;
	crash_vfs.xCurrentTimeInt64 = c_current_time_i64;
	return sqlite3_vfs_register(&crash_vfs, 1);
}

void crash_vfs_arm(unsigned long at)
{
	pthread_mutex_lock(&mu);
	crash_at = at;
	events = 0;
	pthread_mutex_unlock(&mu);
}

/* A counter's value, read under the lock. */
static unsigned long locked_read(const unsigned long *counter)
{
	unsigned long n;

	pthread_mutex_lock(&mu);
	n = *counter;
	pthread_mutex_unlock(&mu);
	return n;
}

unsigned long crash_vfs_events(void)
{
	return locked_read(&events);
}

void crash_vfs_fail_sync(unsigned long nth)
{
	pthread_mutex_lock(&mu);
	fail_sync_at = nth ? syncs_seen + nth : 0;
	pthread_mutex_unlock(&mu);
}

unsigned long crash_vfs_failed_syncs(void)
{
	return locked_read(&failed_syncs);
}

void crash_vfs_hold_syncs(bool on)
{
	pthread_mutex_lock(&mu);
	is_holding_syncs = on;
	if (!on)
		pthread_cond_broadcast(&is_released);
	pthread_mutex_unlock(&mu);
}

unsigned long crash_vfs_held_syncs(void)
{
	return locked_read(&held_syncs);
}

void crash_vfs_fail_event(unsigned long nth)
{
	pthread_mutex_lock(&mu);
	fail_event_at = nth ? all_events + nth : 0;
	pthread_mutex_unlock(&mu);
}

unsigned long crash_vfs_all_events(void)
{
	return locked_read(&all_events);
}
