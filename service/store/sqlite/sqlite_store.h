/* The embedded SQLite backend: --store sqlite:PATH. */
#ifndef DAS_STORE_SQLITE_H
#define DAS_STORE_SQLITE_H

#include "service/store/store.h"

extern const struct store_ops store_sqlite_ops;

#endif
