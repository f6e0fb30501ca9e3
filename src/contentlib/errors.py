"""Every standard vAPI error, registered once with its HTTP status on /api.

Errors are values: services raise `ApiError(...)` built by the helpers below, and each wire protocol turns it into
its own encoding (`to_rest()` for /api). The statuses are those of the vendor's /api spec (REFERENCE.md §1 item 4),
which differ from the runtime's generic map for RESOURCE_BUSY and RESOURCE_INACCESSIBLE (500, not 400).
"""

from __future__ import annotations

from typing import Any

# error_type -> HTTP status on /api
STATUS: dict[str, int] = {
    "ERROR": 500,
    "ALREADY_EXISTS": 400,
    "ALREADY_IN_DESIRED_STATE": 400,
    "CANCELED": 500,
    "CONCURRENT_CHANGE": 409,
    "FEATURE_IN_USE": 400,
    "INTERNAL_SERVER_ERROR": 500,
    "INVALID_ARGUMENT": 400,
    "INVALID_ELEMENT_CONFIGURATION": 400,
    "INVALID_ELEMENT_TYPE": 400,
    "INVALID_REQUEST": 400,
    "NOT_ALLOWED_IN_CURRENT_STATE": 400,
    "NOT_FOUND": 404,
    "OPERATION_NOT_FOUND": 404,
    "RESOURCE_BUSY": 500,
    "RESOURCE_IN_USE": 400,
    "RESOURCE_INACCESSIBLE": 500,
    "SERVICE_UNAVAILABLE": 503,
    "TIMED_OUT": 504,
    "UNABLE_TO_ALLOCATE_RESOURCE": 400,
    "UNAUTHENTICATED": 401,
    "UNAUTHORIZED": 403,
    "UNEXPECTED_INPUT": 400,
    "UNSUPPORTED": 400,
    "UNVERIFIED_PEER": 400,
}

# error_type -> HTTP status on the legacy /rest dialect: the vAPI runtime's map (REFERENCE.md §4.3), which the /api
# contract overrode for these two.
LEGACY_STATUS: dict[str, int] = {**STATUS, "RESOURCE_BUSY": 400, "RESOURCE_INACCESSIBLE": 400}


def message(msg_id: str, text: str, *args: object) -> dict[str, Any]:
    """A vapi.std.LocalizableMessage."""
    return {"id": msg_id, "default_message": text, "args": [str(a) for a in args]}


class ApiError(Exception):
    """A standard vAPI error: `error_type` (the Error.Type discriminator) plus a stack of messages."""

    def __init__(self, error_type: str, msg_id: str, text: str, *args: object) -> None:
        super().__init__(text)
        assert error_type in STATUS, error_type
        self.error_type = error_type
        self.messages = [message(msg_id, text, *args)]

    @property
    def status(self) -> int:
        return STATUS[self.error_type]

    @property
    def legacy_status(self) -> int:
        return LEGACY_STATUS[self.error_type]

    def to_rest(self) -> dict[str, Any]:
        return {"error_type": self.error_type, "messages": self.messages}


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(
        "NOT_FOUND",
        f"com.vmware.content.{what.replace(' ', '_')}.not_found",
        f"The {what} {ident} does not exist.",
        ident,
    )


def invalid_argument(text: str, *args: object, msg_id: str = "com.vmware.vapi.std.errors.invalid_argument") -> ApiError:
    return ApiError("INVALID_ARGUMENT", msg_id, text, *args)


def not_allowed(
    text: str, *args: object, msg_id: str = "com.vmware.vapi.std.errors.not_allowed_in_current_state"
) -> ApiError:
    return ApiError("NOT_ALLOWED_IN_CURRENT_STATE", msg_id, text, *args)


def already_exists(text: str, *args: object) -> ApiError:
    return ApiError("ALREADY_EXISTS", "com.vmware.vapi.std.errors.already_exists", text, *args)


def resource_busy(text: str, *args: object) -> ApiError:
    return ApiError("RESOURCE_BUSY", "com.vmware.vapi.std.errors.resource_busy", text, *args)


def concurrent_change(text: str, *args: object) -> ApiError:
    return ApiError("CONCURRENT_CHANGE", "com.vmware.vapi.std.errors.concurrent_change", text, *args)


def unable_to_allocate(
    text: str, *args: object, msg_id: str = "com.vmware.vapi.std.errors.unable_to_allocate_resource"
) -> ApiError:
    return ApiError("UNABLE_TO_ALLOCATE_RESOURCE", msg_id, text, *args)


def unauthenticated(text: str = "Authentication required.") -> ApiError:
    return ApiError("UNAUTHENTICATED", "com.vmware.vapi.endpoint.method.authentication.required", text)


def unauthorized(text: str, *args: object) -> ApiError:
    return ApiError("UNAUTHORIZED", "vapi.security.authorization.invalid", text, *args)


def operation_not_found(text: str, *args: object) -> ApiError:
    return ApiError("OPERATION_NOT_FOUND", "com.vmware.vapi.rest.httpNotFound", text, *args)


def internal(text: str) -> ApiError:
    return ApiError("INTERNAL_SERVER_ERROR", "com.vmware.vapi.std.errors.internal_server_error", text)
