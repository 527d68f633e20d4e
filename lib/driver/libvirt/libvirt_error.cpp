#include "driver/libvirt/libvirt_error.h"

#include <string>

namespace cloudmgr::libvirt {

StatusCode status_code_for(int vir_error_code) noexcept {
  switch (vir_error_code) {
    case VIR_ERR_OK:
      return StatusCode::kOk;

    case VIR_ERR_NO_DOMAIN:
    case VIR_ERR_NO_DOMAIN_SNAPSHOT:
    case VIR_ERR_NO_DOMAIN_CHECKPOINT:
    case VIR_ERR_NO_DOMAIN_BACKUP:
    case VIR_ERR_NO_DOMAIN_METADATA:
    case VIR_ERR_NO_NETWORK:
    case VIR_ERR_NO_NETWORK_PORT:
    case VIR_ERR_NO_STORAGE_POOL:
    case VIR_ERR_NO_STORAGE_VOL:
    case VIR_ERR_NO_NODE_DEVICE:
    case VIR_ERR_NO_INTERFACE:
    case VIR_ERR_NO_NWFILTER:
    case VIR_ERR_NO_NWFILTER_BINDING:
    case VIR_ERR_NO_SECRET:
    case VIR_ERR_NO_SECURITY_MODEL:
    case VIR_ERR_DEVICE_MISSING:
      return StatusCode::kNotFound;

    case VIR_ERR_DOM_EXIST:
    case VIR_ERR_NETWORK_EXIST:
    case VIR_ERR_NETWORK_PORT_EXIST:
    case VIR_ERR_STORAGE_VOL_EXIST:
    case VIR_ERR_STORAGE_POOL_BUILT:
      return StatusCode::kAlreadyExists;

    case VIR_ERR_INVALID_ARG:
    case VIR_ERR_XML_ERROR:
    case VIR_ERR_XML_DETAIL:
    case VIR_ERR_XML_INVALID_SCHEMA:
    case VIR_ERR_INVALID_MAC:
    case VIR_ERR_CONFIG_UNSUPPORTED:
    case VIR_ERR_OS_TYPE:
    case VIR_ERR_NO_NAME:
    case VIR_ERR_NO_OS:
    case VIR_ERR_NO_SOURCE:
    case VIR_ERR_NO_TARGET:
    case VIR_ERR_NO_KERNEL:
    case VIR_ERR_NO_ROOT:
    case VIR_ERR_NO_DEVICE:
    case VIR_ERR_CPU_INCOMPATIBLE:
    case VIR_ERR_INVALID_DOMAIN_SNAPSHOT:
    case VIR_ERR_CONF_SYNTAX:
      return StatusCode::kInvalidArgument;

    case VIR_ERR_OPERATION_INVALID:
    case VIR_ERR_SNAPSHOT_REVERT_RISKY:
    case VIR_ERR_MIGRATE_UNSAFE:
    case VIR_ERR_BLOCK_COPY_ACTIVE:
    case VIR_ERR_CHECKPOINT_INCONSISTENT:
      return StatusCode::kFailedPrecondition;

    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
      return StatusCode::kUnimplemented;

    case VIR_ERR_OPERATION_DENIED:
    case VIR_ERR_ACCESS_DENIED:
      return StatusCode::kPermissionDenied;

    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_CANCELLED:
    case VIR_ERR_AUTH_UNAVAILABLE:
      return StatusCode::kUnauthenticated;

    case VIR_ERR_OPERATION_TIMEOUT:
      return StatusCode::kDeadlineExceeded;

    case VIR_ERR_OPERATION_ABORTED:
      return StatusCode::kAborted;

    case VIR_ERR_NO_MEMORY:
    case VIR_ERR_OVERFLOW:
      return StatusCode::kResourceExhausted;

    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
    case VIR_ERR_UNKNOWN_HOST:
    case VIR_ERR_RPC:
    case VIR_ERR_SSH:
    case VIR_ERR_LIBSSH:
    case VIR_ERR_GNUTLS_ERROR:
    case VIR_ERR_AGENT_UNRESPONSIVE:
    case VIR_ERR_AGENT_UNSYNCED:
    case VIR_ERR_RESOURCE_BUSY:
    case VIR_ERR_NO_SERVER:
    case VIR_ERR_DBUS_SERVICE:
      return StatusCode::kUnavailable;

    default:
      // VIR_ERR_INTERNAL_ERROR, VIR_ERR_OPERATION_FAILED, VIR_ERR_SYSTEM_ERROR, ... : the
      // hypervisor failed in a way the caller cannot fix by changing the request.
      return StatusCode::kInternal;
  }
}

Status status_from_error(const virError* error, std::string_view context) {
  if (error == nullptr || error->code == VIR_ERR_OK) {
    return Status(StatusCode::kInternal, std::string(context) + ": libvirt reported a failure without an error");
  }
  std::string message(context);
  const char* text = error->message;
  message += ": ";
  message += text != nullptr ? text : "unknown libvirt error";
  StatusCode code = status_code_for(error->code);
  // libvirt reports a name clash on define as OPERATION_FAILED ("domain 'x' already exists
  // with uuid ...") rather than DOM_EXIST.
  if (code == StatusCode::kInternal && text != nullptr &&
      std::string_view(text).find("already exists") != std::string_view::npos) {
    code = StatusCode::kAlreadyExists;
  }
  return {code, std::move(message)};
}

Status last_error(std::string_view context) {
  Status status = status_from_error(virGetLastError(), context);
  virResetLastError();
  return status;
}

}  // namespace cloudmgr::libvirt
