"""Errors: one class per libcolo status (colo.h), each also a subclass of the matching builtin."""


class ColoError(Exception):
    """Every failure of this package. `code` is the agent's error code (docs/protocol.md), or ''
    when the failure was found here; `op` is the operation; `target` the name or address."""

    def __init__(self, op, message, code="", target=""):
        self.op, self.code, self.target, self.message = op, code, target, message
        where = f"{op} {target}" if target else op
        super().__init__(f"colo: {where}: {self.what}: {message}" if message else f"colo: {where}: {self.what}")

    what = "error"


class Unreachable(ColoError, ConnectionError):
    what = "colo-node unreachable"


class ProtocolError(ColoError):
    what = "protocol error"


class NotFound(ColoError, LookupError):
    what = "not found"


class Denied(ColoError, PermissionError):
    what = "permission denied"


class Refused(ColoError, ConnectionRefusedError):
    what = "connection refused"


class Timeout(ColoError, TimeoutError):
    what = "timed out"


class Invalid(ColoError, ValueError):
    what = "invalid argument"


class Exists(ColoError, FileExistsError):
    what = "already exists"


class Unavailable(ColoError):
    what = "unavailable"


class Closed(ColoError, OSError):
    """The listener was closed (Go's net.ErrClosed)."""

    what = "closed"


class Internal(ColoError):
    what = "internal error"


_BY_CODE = {
    "not_found": NotFound,
    "permission_denied": Denied,
    "refused": Refused,
    "timeout": Timeout,
    "invalid_argument": Invalid,
    "bad_request": Invalid,
    "already_exists": Exists,
    "unavailable": Unavailable,
}


def from_reply(op, target, error):
    """The exception for an agent's {"code", "message"}; unknown codes are Internal (as libcolo)."""
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    message = str(error.get("message", "")) if isinstance(error, dict) else "reply without error"
    return _BY_CODE.get(code, Internal)(op, message, code=code, target=target)
