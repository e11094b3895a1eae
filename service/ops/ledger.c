/*
 * ListLedger, GetSeatUsage and the ledger's retention.
 *
 * Paging is by keyset on the ledger's sequence number, never by offset, so
 * a page costs one index descent however deep it is. The first page reads
 * the highest sequence number of the customer in the same snapshot as its
 * rows and puts it in the token: later pages ignore entries written after
 * paging began (newest first they would come on top; oldest first at the
 * end), and the keyset step never returns an entry twice or skips one that
 * existed, whatever is written between pages. Retention can still remove
 * old entries between pages; those are gone for every reader.
 */
#include "ops.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/condwait.h"
#include "common/log.h"
#include "service/ops/ops_tx.h"
#include "service/ops/page_token.h"

_Static_assert(OPS_PAGE_TOKEN_SIZE == PAGE_TOKEN_SIZE,
	       "ops.h must size the token like page_token.h");
_Static_assert(STORE_LEDGER_KEY_SIZE == PAGE_TOKEN_KEY_SIZE,
	       "the store keeps the token key");

/* Rows 2 (account, then customer: path order) into key; detail on error. */
static enum das_status validate_tenants(struct ops_text tenant,
					struct ops_text account,
					struct domain_key *key,
					struct ops_result *result)
{
	if (account.len > 0) {
		if (das_guid_normalize(account.s, account.len, key->account) !=
		    0) {
			domain_quote_value(account.s, account.len,
					   result->detail);
			return result->status = DAS_INVALID_TENANT_ID;
		}
		key->has_account = true;
	}
	if (!tenant.s ||
	    das_guid_normalize(tenant.s, tenant.len, key->customer) != 0) {
		domain_quote_value(tenant.s ? tenant.s : "", tenant.len,
				   result->detail);
		return result->status = DAS_INVALID_TENANT_ID;
	}
	return DAS_OK;
}

/* Row 3 for an optional id filter. */
static enum das_status validate_filter(struct ops_text t, char out[DAS_ID_SIZE],
				       struct ops_result *result)
{
	if (t.len == 0) {
		out[0] = '\0';
		return DAS_OK;
	}
	if (!das_id_is_valid(t.s, t.len)) {
		domain_quote_value(t.s, t.len, result->detail);
		return result->status = DAS_INVALID_ID;
	}
	memcpy(out, t.s, t.len);
	out[t.len] = '\0';
	return DAS_OK;
}

static bool time_is_valid(struct das_time t)
{
	char buf[DAS_TIMESTAMP_SIZE];

	return das_time_format(t, buf) == 0;
}

static bool time_before(struct das_time a, struct das_time b)
{
	return a.seconds < b.seconds ||
	       (a.seconds == b.seconds && a.nanos < b.nanos);
}

/* The query a token belongs to: everything but the page size. */
static size_t binding(const struct store_ledger_query *q,
		      const struct domain_key *key, char out[OPS_LEDGER_BINDING_SIZE])
{
	int n = snprintf(out, OPS_LEDGER_BINDING_SIZE,
			 "ledger|%s|%s|%s|%s|%d:%" PRId64 ".%" PRId32
			 "|%d:%" PRId64 ".%" PRId32 "|%d|%d",
			 q->customer, key->has_account ? key->account : "",
			 q->user, q->device, q->has_since, q->since.seconds,
			 q->since.nanos, q->has_until, q->until.seconds,
			 q->until.nanos, q->is_only_charged,
			 q->is_oldest_first);

	return n > 0 && n < OPS_LEDGER_BINDING_SIZE ? (size_t)n
						   : OPS_LEDGER_BINDING_SIZE - 1;
}

/* What a row can add to the packed response, at most. */
static size_t row_bytes(const struct store_ledger_row *r)
{
	return 64 + strlen(r->actor) + strlen(r->request_id) +
	       strlen(r->user) + strlen(r->device);
}

/*
 * The query's transaction (a read-only job, l->body): row 4 and 6 on the
 * customer's snapshot, then the page. The page is allocated here when the
 * caller gave none, so a query waiting for the store holds no page.
 */
static int ledger_body(struct store_tx *tx, struct ops_later *l)
{
	struct ops_ledger_call *a = &l->ledger;
	struct ops_result *result = &l->result;
	struct ops_ledger_page *page;
	struct domain_snapshot snap;
	size_t n = 0, keep, bytes = 0;
	int rc;

	if (!l->page && !(l->page = malloc(sizeof(*l->page))))
		return STORE_ERROR;
	page = l->page;
	page->n = 0;
	page->next_token[0] = '\0';
	rc = store_load(tx, &l->key, &snap);
	if (rc != STORE_OK || ops_later_is_late(l))
		return rc;
	result->status = domain_check_ledger(&l->who, &l->key, &snap, a->row5);
	if (result->status != DAS_OK) {
		if (result->status == a->row5)
			memcpy(result->detail, a->row5_detail,
			       sizeof(result->detail));
		return STORE_OK;
	}
	if (!a->has_cursor) {
		rc = store_ledger_last_id(tx, l->key.customer, &a->q.bound_id);
		if (rc != STORE_OK)
			return rc;
		a->q.after_id = 0;
	}
	/* One row more than asked tells whether another page follows. */
	rc = store_ledger_page(tx, &a->q, page->rows, a->page_size + 1, &n);
	if (rc != STORE_OK)
		return rc;
	for (keep = 0; keep < n && keep < a->page_size; keep++) {
		bytes += row_bytes(&page->rows[keep]);
		if (bytes > OPS_LEDGER_PAGE_BYTES && keep > 0)
			break;
	}
	page->n = keep;
	if (keep < n) {
		struct page_cursor c = {page->rows[keep - 1].id,
					a->q.bound_id};

		page_token_encode(a->token_key, a->binding, a->binding_len, &c,
				  page->next_token);
	}
	result->at = das_time_now();
	return STORE_OK;
}

/* Row 5: the request's own arguments. Returns the status to answer. */
static enum das_status check_arguments(const struct ops_ledger_query *in,
				       struct ops_ledger_call *a)
{
	struct page_cursor c;

	if (in->page_size > OPS_LEDGER_PAGE_MAX) {
		snprintf(a->row5_detail, sizeof(a->row5_detail),
			 "pageSize must be between 1 and %d",
			 OPS_LEDGER_PAGE_MAX);
		return DAS_INVALID_ARGUMENT;
	}
	if (in->order < OPS_LEDGER_DEFAULT_ORDER ||
	    in->order > OPS_LEDGER_OLDEST_FIRST) {
		snprintf(a->row5_detail, sizeof(a->row5_detail),
			 "order must be newest or oldest");
		return DAS_INVALID_ARGUMENT;
	}
	if (in->has_since && !time_is_valid(in->since)) {
		snprintf(a->row5_detail, sizeof(a->row5_detail),
			 "since is not a valid timestamp");
		return DAS_INVALID_ARGUMENT;
	}
	if (in->has_until && !time_is_valid(in->until)) {
		snprintf(a->row5_detail, sizeof(a->row5_detail),
			 "until is not a valid timestamp");
		return DAS_INVALID_ARGUMENT;
	}
	if (in->has_since && in->has_until &&
	    !time_before(in->since, in->until)) {
		snprintf(a->row5_detail, sizeof(a->row5_detail),
			 "until must be later than since");
		return DAS_INVALID_ARGUMENT;
	}
	if (in->page_token.len == 0)
		return DAS_OK;
	if (page_token_decode(a->token_key, a->binding, a->binding_len,
			      in->page_token.s, in->page_token.len, &c) != 0) {
		snprintf(a->row5_detail, sizeof(a->row5_detail),
			 "pageToken is not valid for this query");
		return DAS_INVALID_ARGUMENT;
	}
	a->has_cursor = true;
	a->q.after_id = c.after_id;
	a->q.bound_id = c.bound_id;
	return DAS_OK;
}

/* Fresh query state in l: the result, the key, the query. */
static void ledger_later_init(struct ops_later *l)
{
	ops_result_init(&l->result);
	memset(&l->key, 0, sizeof(l->key));
	memset(&l->ledger, 0, sizeof(l->ledger));
}

bool ops_list_ledger_start(struct store *st, const struct domain_principal *who,
			   const struct ops_ledger_query *in,
			   struct ops_later *l)
{
	struct ops_ledger_call *a = &l->ledger;

	ledger_later_init(l);
	if (validate_tenants(in->tenant, in->account, &l->key, &l->result) !=
		    DAS_OK ||
	    validate_filter(in->user, a->q.user, &l->result) != DAS_OK ||
	    validate_filter(in->device, a->q.device, &l->result) != DAS_OK)
		return true;

	memcpy(a->q.customer, l->key.customer, DAS_GUID_SIZE);
	a->q.has_since = in->has_since;
	a->q.since = in->has_since ? in->since : (struct das_time){0, 0};
	a->q.has_until = in->has_until;
	a->q.until = in->has_until ? in->until : (struct das_time){0, 0};
	a->q.is_only_charged = in->is_only_charged;
	a->q.is_oldest_first = in->order == OPS_LEDGER_OLDEST_FIRST;
	a->page_size = in->page_size ? in->page_size : OPS_LEDGER_PAGE_DEFAULT;
	store_ledger_key(st, a->token_key);
	a->binding_len = binding(&a->q, &l->key, a->binding);
	a->row5 = check_arguments(in, a);
	l->body = ledger_body;
	return ops_later_run(l, st, who, true);
}

enum das_status ops_list_ledger(struct store *st,
				const struct domain_principal *who,
				const struct ops_ledger_query *in,
				struct ops_result *result,
				struct ops_ledger_page *page)
{
	struct ops_wait w;
	struct ops_later *l = ops_wait_begin(&w);

	page->n = 0;
	page->next_token[0] = '\0';
	l->page = page;
	return ops_wait_end(&w, ops_list_ledger_start(st, who, in, l), result);
}

static uint32_t clamp_u32(int64_t v)
{
	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* GetSeatUsage's transaction (a read-only job, l->body). */
static int seats_body(struct store_tx *tx, struct ops_later *l)
{
	struct ops_result *result = &l->result;
	struct ops_seat_usage *usage = l->usage;
	struct domain_snapshot snap;
	int64_t charged = 0;
	int rc = store_load(tx, &l->key, &snap);

	if (rc != STORE_OK || ops_later_is_late(l))
		return rc;
	result->status = domain_check_ledger(&l->who, &l->key, &snap, DAS_OK);
	if (result->status != DAS_OK)
		return STORE_OK;
	rc = store_seats_charged(tx, l->key.customer, &charged);
	if (rc != STORE_OK)
		return rc;
	usage->is_seat_limited = snap.is_seat_limited;
	usage->included = clamp_u32(snap.included_seats);
	usage->used = clamp_u32(snap.seats_in_use);
	usage->charged = clamp_u32(charged);
	result->at = das_time_now();
	return STORE_OK;
}

bool ops_seat_usage_start(struct store *st, const struct domain_principal *who,
			  struct ops_text tenant, struct ops_text account,
			  struct ops_later *l)
{
	ledger_later_init(l);
	memset(l->usage, 0, sizeof(*l->usage));
	if (validate_tenants(tenant, account, &l->key, &l->result) != DAS_OK)
		return true;
	l->body = seats_body;
	return ops_later_run(l, st, who, true);
}

enum das_status ops_seat_usage(struct store *st,
			       const struct domain_principal *who,
			       struct ops_text tenant, struct ops_text account,
			       struct ops_result *result,
			       struct ops_seat_usage *usage)
{
	struct ops_wait w;
	struct ops_later *l = ops_wait_begin(&w);

	l->usage = usage;
	return ops_wait_end(&w,
			    ops_seat_usage_start(st, who, tenant, account, l),
			    result);
}

/* ---- retention ---- */

struct prune_arg {
	int64_t before;
	size_t batch;
	size_t n;
};

static int prune_body(struct store_tx *tx, void *arg,
		      struct ops_result *result)
{
	struct prune_arg *a = arg;

	(void)result;
	return store_ledger_prune(tx, a->before, a->batch, &a->n);
}

int ops_ledger_prune(struct store *st, unsigned days, struct das_time now,
		     size_t batch, size_t max_batches, size_t *n_deleted)
{
	struct prune_arg a = {now.seconds - (int64_t)days * 86400, batch, 0};
	struct ops_result r;

	*n_deleted = 0;
	if (days == 0 || batch == 0)
		return 0;
	for (size_t i = 0; i < max_batches; i++) {
		/* 2 ms between batches: queued writers go first. */
		struct timespec pause = {0, 2 * 1000 * 1000};

		if (i > 0)
			nanosleep(&pause, NULL);
		ops_result_init(&r);
		/* Not a customer's transaction: "" locks no customer. */
		if (ops_run_tx(st, "", false, prune_body, &a, &r) != DAS_OK)
			return -1;
		*n_deleted += a.n;
		if (a.n < batch)
			return 0;
	}
	return 1;
}

struct ops_retention {
	struct store *st;
	unsigned days;
	unsigned interval_s;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool is_stopping;
};

#define PRUNE_BATCH 100
#define PRUNE_BATCHES_PER_STEP 50 /* then look whether to stop */

/* One run: batches until nothing old is left or the server stops. */
static int prune_run(struct ops_retention *r, size_t *n)
{
	struct das_time now = das_time_now();
	size_t step;
	int rc;

	*n = 0;
	for (;;) {
		bool is_stopping;

		rc = ops_ledger_prune(r->st, r->days, now, PRUNE_BATCH,
				      PRUNE_BATCHES_PER_STEP, &step);
		*n += step;
		pthread_mutex_lock(&r->lock);
		is_stopping = r->is_stopping;
		pthread_mutex_unlock(&r->lock);
		if (rc != 1 || is_stopping)
			return rc < 0 ? -1 : 0;
	}
}

static void *retention_main(void *arg)
{
	struct ops_retention *r = arg;

	pthread_mutex_lock(&r->lock);
	while (!r->is_stopping) {
		struct timespec until;
		size_t n = 0;
		int rc;

		pthread_mutex_unlock(&r->lock);
		rc = prune_run(r, &n);
		if (rc != 0)
			das_log(DAS_LOG_WARN,
				"ledger retention: prune failed after %zu "
				"row(s); next try in %u s",
				n, r->interval_s);
		else if (n > 0)
			das_log(DAS_LOG_INFO,
				"ledger retention: pruned %zu row(s) older "
				"than %u day(s)",
				n, r->days);
		pthread_mutex_lock(&r->lock);
		until = das_monotonic_after_ms((uint64_t)r->interval_s * 1000);
		while (!r->is_stopping &&
		       pthread_cond_timedwait(&r->wake, &r->lock, &until) !=
			       ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

struct ops_retention *ops_retention_start(struct store *st, unsigned days,
					  unsigned interval_s)
{
	struct ops_retention *r;

	if (days == 0)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->st = st;
	r->days = days;
	r->interval_s = interval_s ? interval_s : 1;
	pthread_mutex_init(&r->lock, NULL);
	das_cond_init_monotonic(&r->wake);
	if (pthread_create(&r->thread, NULL, retention_main, r) != 0) {
		pthread_cond_destroy(&r->wake);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	return r;
}

void ops_retention_stop(struct ops_retention *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->is_stopping = true;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
