/*
 * The RPCs of the contract, one table used by the server (to register the
 * methods), the clients (CLI, gateway, tests) and the status-details codec.
 * protobuf-c types are confined to the server's grpc/ folder, the client
 * library and the gateway's upstream glue.
 */
#ifndef DAS_PROTO_RPC_METHODS_H
#define DAS_PROTO_RPC_METHODS_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define DAS_RPC_METHOD_MAP(X)                                                  \
	X(ASSIGN_DEVICE, "/deviceassignment.v1.DeviceAssignment/AssignDevice",   \
	  deviceassignment__v1__assign_device_request,                          \
	  deviceassignment__v1__assign_device_response)                         \
	X(UNASSIGN_DEVICE,                                                       \
	  "/deviceassignment.v1.DeviceAssignment/UnassignDevice",               \
	  deviceassignment__v1__unassign_device_request,                        \
	  deviceassignment__v1__unassign_device_response)                       \
	X(LIST_USER_DEVICES,                                                     \
	  "/deviceassignment.v1.DeviceAssignment/ListUserDevices",              \
	  deviceassignment__v1__list_user_devices_request,                      \
	  deviceassignment__v1__list_user_devices_response)                     \
	X(LIST_LEDGER, "/deviceassignment.v1.DeviceAssignment/ListLedger",       \
	  deviceassignment__v1__list_ledger_request,                            \
	  deviceassignment__v1__list_ledger_response)                           \
	X(GET_SEAT_USAGE,                                                        \
	  "/deviceassignment.v1.DeviceAssignment/GetSeatUsage",                 \
	  deviceassignment__v1__get_seat_usage_request,                         \
	  deviceassignment__v1__get_seat_usage_response)                        \
	X(UPSERT_CUSTOMER, "/deviceassignment.v1.Directory/UpsertCustomer",      \
	  deviceassignment__v1__upsert_customer_request,                        \
	  deviceassignment__v1__directory_response)                             \
	X(DELETE_CUSTOMER, "/deviceassignment.v1.Directory/DeleteCustomer",      \
	  deviceassignment__v1__delete_customer_request,                        \
	  deviceassignment__v1__directory_response)                             \
	X(UPSERT_USER, "/deviceassignment.v1.Directory/UpsertUser",              \
	  deviceassignment__v1__upsert_user_request,                            \
	  deviceassignment__v1__directory_response)                             \
	X(DELETE_USER, "/deviceassignment.v1.Directory/DeleteUser",              \
	  deviceassignment__v1__delete_user_request,                            \
	  deviceassignment__v1__directory_response)                             \
	X(UPSERT_PBX_DEVICE, "/deviceassignment.v1.Directory/UpsertPbxDevice",   \
	  deviceassignment__v1__upsert_pbx_device_request,                      \
	  deviceassignment__v1__directory_response)                             \
	X(DELETE_PBX_DEVICE, "/deviceassignment.v1.Directory/DeletePbxDevice",   \
	  deviceassignment__v1__delete_pbx_device_request,                      \
	  deviceassignment__v1__directory_response)                             \
	X(HEALTH_CHECK, "/grpc.health.v1.Health/Check",                          \
	  grpc__health__v1__health_check_request,                               \
	  grpc__health__v1__health_check_response)

enum das_rpc_method {
#define DAS_RPC_ENUM(name, path, req, resp) DAS_RPC_##name,
	DAS_RPC_METHOD_MAP(DAS_RPC_ENUM)
#undef DAS_RPC_ENUM
	DAS_RPC__COUNT
};

struct das_rpc_method_info {
	enum das_rpc_method method;
	const char *path;
	const ProtobufCMessageDescriptor *request;
	const ProtobufCMessageDescriptor *response;
};

/* The table row of a method (method must be < DAS_RPC__COUNT). */
const struct das_rpc_method_info *das_rpc_method(enum das_rpc_method method);

/* Upper bound on any request or response message we accept. */
#define DAS_RPC_MAX_MESSAGE (64 * 1024)

/* The trailer carrying the serialized google.rpc.Status. */
#define DAS_STATUS_DETAILS_KEY "grpc-status-details-bin"
#define DAS_ERROR_INFO_TYPE_URL "type.googleapis.com/google.rpc.ErrorInfo"

/*
 * Serializes google.rpc.Status{code, message, details: [ErrorInfo{reason,
 * domain "deviceassignment.v1"}]} into a malloc'd buffer (caller frees).
 * Returns NULL on allocation failure.
 */
uint8_t *das_status_details_pack(int code, const char *message,
				 const char *reason, size_t *len);

/*
 * Reads the ErrorInfo reason of our domain out of a serialized
 * google.rpc.Status. Returns 0 and fills reason (NUL-terminated, truncated
 * to size), or -1 when the bytes hold no such ErrorInfo.
 */
int das_status_details_reason(const uint8_t *data, size_t len, char *reason,
			      size_t size);

#endif
