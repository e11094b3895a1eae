#include "store.h"

#include <stdio.h>
#include <string.h>

int store_open(const char *spec, const struct store_options *opt,
	       struct store **out, char *err, size_t err_size)
{
	static const struct store_options defaults = {0, 5000};

	if (!opt)
		opt = &defaults;
	for (size_t i = 0; store_backends[i]; i++)
		if (store_backends[i]->accepts(spec))
			return store_backends[i]->open(spec, opt, out, err,
						       err_size);
	snprintf(err, err_size,
		 "unsupported --store '%s' (want sqlite:PATH or postgresql://...)",
		 spec);
	return STORE_ERROR;
}

void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}

int store_begin(struct store *st, const char *customer, bool is_read_only,
		struct store_tx **out)
{
	return st->ops->begin(st, customer, is_read_only, out);
}

int store_commit(struct store_tx *tx)
{
	return tx->st->ops->commit(tx);
}

void store_rollback(struct store_tx *tx)
{
	if (tx)
		tx->st->ops->rollback(tx);
}

int store_load(struct store_tx *tx, const struct domain_key *key,
	       struct domain_snapshot *snap)
{
	return tx->st->ops->load(tx, key, snap);
}

int store_apply(struct store_tx *tx, const char *customer,
		const struct domain_change *changes, size_t n,
		const struct store_actor *actor)
{
	return tx->st->ops->apply(tx, customer, changes, n, actor);
}

int store_customer_put(struct store_tx *tx, const struct store_customer *c,
		       bool *is_changed)
{
	return tx->st->ops->customer_put(tx, c, is_changed);
}

int store_customer_delete(struct store_tx *tx, const char *customer,
			  const struct store_actor *actor, bool *is_changed,
			  uint32_t *n_dropped)
{
	return tx->st->ops->customer_delete(tx, customer, actor, is_changed,
					    n_dropped);
}

int store_user_put(struct store_tx *tx, const char *customer, const char *user,
		   const char *roles_text, bool *is_changed)
{
	return tx->st->ops->user_put(tx, customer, user, roles_text,
				     is_changed);
}

int store_user_delete(struct store_tx *tx, const char *customer,
		      const char *user, bool *is_changed)
{
	return tx->st->ops->user_delete(tx, customer, user, is_changed);
}

int store_device_put(struct store_tx *tx, const char *customer,
		     const char *device, const char *owner, bool *is_changed)
{
	return tx->st->ops->device_put(tx, customer, device, owner,
				       is_changed);
}

int store_device_delete(struct store_tx *tx, const char *customer,
			const char *device, bool *is_changed)
{
	return tx->st->ops->device_delete(tx, customer, device, is_changed);
}

int store_ledger_read(struct store *st, const char *customer, int64_t after_id,
		      struct store_ledger_row *rows, size_t max, size_t *n)
{
	return st->ops->ledger_read(st, customer, after_id, rows, max, n);
}
