#define _XOPEN_SOURCE 700 /* nftw */

#include "store_seq.h"

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void store_seq_rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void store_seq_who(struct domain_principal *who, const char *sub)
{
	memset(who, 0, sizeof(*who));
	snprintf(who->sub, sizeof(who->sub), "%s", sub);
	who->is_all_tenants = true;
	who->scopes = DOMAIN_SCOPE_ASSIGN | DOMAIN_SCOPE_DIRECTORY;
}

struct ops_text store_seq_text(const char *s)
{
	struct ops_text t = {s, strlen(s)};
	return t;
}

void store_seq_request(struct domain_request *req, const char *user,
		       const char *device, int type)
{
	memset(req, 0, sizeof(*req));
	req->op = type ? DOMAIN_OP_ASSIGN : DOMAIN_OP_UNASSIGN;
	req->customer = STORE_SEQ_CUST;
	req->customer_len = strlen(STORE_SEQ_CUST);
	req->account = "";
	req->user = user;
	req->user_len = strlen(user);
	req->device = device;
	req->device_len = strlen(device);
	req->client_type = type;
}

enum das_status store_seq_device_op(struct store *st, const char *sub,
				    const char *user, const char *device,
				    int type)
{
	struct domain_principal who;
	struct domain_request req;
	struct ops_result r;

	store_seq_who(&who, sub);
	store_seq_request(&req, user, device, type);
	req.is_charge_accepted = true;
	return ops_device(st, &who, &req, &r);
}
