/* The PostgreSQL backend (libpq): --store postgresql://... */
#ifndef DAS_STORE_POSTGRES_H
#define DAS_STORE_POSTGRES_H

#include "service/store/store.h"

extern const struct store_ops store_postgres_ops;

#endif
