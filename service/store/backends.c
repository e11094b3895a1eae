/* The store backends compiled into this build, tried in order. */
#include "store.h"

#include "service/store/sqlite/sqlite_store.h"
#ifdef DAS_WITH_POSTGRES
#include "service/store/postgres/postgres_store.h"
#endif

const struct store_ops *const store_backends[] = {
	&store_sqlite_ops,
#ifdef DAS_WITH_POSTGRES
	&store_postgres_ops,
#endif
	NULL,
};
