/*
 * Fuzz target: an AssignDeviceRequest off the wire through unpacking,
 * validation (rows 2-3) and the decision (rows 4-10) against a fixed
 * snapshot, checking the decision's invariants.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deviceassignment/v1/device_assignment.pb-c.h"

#include "service/domain/domain.h"
#include "service/grpc/handlers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Deviceassignment__V1__AssignDeviceRequest *in =
		deviceassignment__v1__assign_device_request__unpack(NULL, size,
								    data);
	struct domain_principal who;
	struct domain_snapshot snap;
	struct domain_key key;
	struct domain_decision dec;
	char detail[DOMAIN_DETAIL_SIZE];

	if (!in)
		return 0;
	struct domain_request req;

	handlers_assign_request(in, &req);
	if (domain_validate(&req, &key, detail) == DAS_OK) {
		memset(&who, 0, sizeof(who));
		who.is_all_tenants = true;
		who.scopes = DOMAIN_SCOPE_ASSIGN;
		memset(&snap, 0, sizeof(snap));
		snap.is_customer_found = true;
		snap.is_user_found = true;
		snap.has_role_uc = snap.has_role_uc_softphone = true;
		snap.is_device_found = true;
		memcpy(snap.device_owner, key.user, DAS_ID_SIZE);
		snap.is_seat_limited = true;
		snap.included_seats = 1;
		memcpy(snap.user_devices[DAS_CLIENT_DESKTOP], "other", 6);
		domain_decide(&who, &req, &key, &snap, &dec);
		if (dec.n_changes > DOMAIN_MAX_CHANGES)
			abort();
		if (dec.status != DAS_OK && dec.n_changes != 0)
			abort();
	} else if (strlen(detail) > 131) {
		abort();
	}
	deviceassignment__v1__assign_device_request__free_unpacked(in, NULL);
	return 0;
}
