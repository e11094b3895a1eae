#include "rpc_methods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"
#include "deviceassignment/v1/directory.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include "common/status.h"

static const struct das_rpc_method_info methods[DAS_RPC__COUNT] = {
#define DAS_RPC_ROW(name, path, req, resp)                                     \
	[DAS_RPC_##name] = {DAS_RPC_##name, path, &req##__descriptor,          \
			    &resp##__descriptor},
	DAS_RPC_METHOD_MAP(DAS_RPC_ROW)
#undef DAS_RPC_ROW
};

const struct das_rpc_method_info *das_rpc_method(enum das_rpc_method method)
{
	return &methods[method];
}

uint8_t *das_status_details_pack(int code, const char *message,
				 const char *reason, size_t *len)
{
	Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	Google__Protobuf__Any *anys[1] = {&any};
	Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
	uint8_t *info_buf = NULL, *out = NULL;
	size_t info_len;

	info.reason = (char *)reason;
	info.domain = (char *)DAS_ERROR_DOMAIN;
	info_len = google__rpc__error_info__get_packed_size(&info);
	info_buf = malloc(info_len ? info_len : 1);
	if (!info_buf)
		goto done;
	google__rpc__error_info__pack(&info, info_buf);

	any.type_url = (char *)DAS_ERROR_INFO_TYPE_URL;
	any.value.data = info_buf;
	any.value.len = info_len;
	status.code = code;
	status.message = (char *)message;
	status.n_details = 1;
	status.details = anys;

	*len = google__rpc__status__get_packed_size(&status);
	out = malloc(*len ? *len : 1);
	if (out)
		google__rpc__status__pack(&status, out);
done:
	free(info_buf);
	return out;
}

int das_status_details_reason(const uint8_t *data, size_t len, char *reason,
			      size_t size)
{
	Google__Rpc__Status *status;
	int result = -1;

	if (size == 0)
		return -1;
	status = google__rpc__status__unpack(NULL, len, data);
	if (!status)
		return -1;
	for (size_t i = 0; i < status->n_details && result != 0; i++) {
		Google__Protobuf__Any *any = status->details[i];
		if (!any->type_url ||
		    strcmp(any->type_url, DAS_ERROR_INFO_TYPE_URL) != 0)
			continue;
		Google__Rpc__ErrorInfo *info = google__rpc__error_info__unpack(
			NULL, any->value.len, any->value.data);
		if (!info)
			continue;
		if (info->domain && strcmp(info->domain, DAS_ERROR_DOMAIN) == 0 &&
		    info->reason) {
			snprintf(reason, size, "%s", info->reason);
			result = 0;
		}
		google__rpc__error_info__free_unpacked(info, NULL);
	}
	google__rpc__status__free_unpacked(status, NULL);
	return result;
}
