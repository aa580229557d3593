package colo

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Sentinels, one per libcolo status (colo.h). Every error this package returns wraps one of them.
var (
	ErrUnreachable = errors.New("colo-node unreachable") // no agent at @colo / $COLO_SOCKET, or it went away
	ErrProtocol    = errors.New("protocol error")        // the agent said something this client does not understand
	ErrNotFound    = errors.New("not found")             // nothing listens on that name on this node
	ErrDenied      = errors.New("permission denied")     // policy refused the dial, or this process is not the pod
	ErrRefused     = errors.New("connection refused")    // TCP connection refused
	ErrTimeout     = errors.New("timed out")             // the context's deadline, or the agent's own timeout
	ErrInvalid     = errors.New("invalid argument")      // bad name, target or size
	ErrExists      = errors.New("already exists")        // the name is already registered
	ErrUnavailable = errors.New("unavailable")           // the listener or the channel's peer went away, or is not reading
	ErrInternal    = errors.New("internal error")        // a bug in colo-node or here; the message says what
)

// Error is what every call returns on failure.
type Error struct {
	Op      string // "open", "hello", "listen", "accept", "dial", "channel", ...
	Target  string // the name or address, when there is one
	Code    string // the agent's error code (docs/protocol.md), or "" when the failure is local
	Message string
	Err     error // one of the sentinels
	cause   error // context.Canceled or context.DeadlineExceeded when the context ended the call
}

func (e *Error) Error() string {
	s := "colo: " + e.Op
	if e.Target != "" {
		s += " " + e.Target
	}
	s += ": " + e.Err.Error()
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets a timeout match the standard library's deadline errors as well as ErrTimeout.
// A call whose context was cancelled matches context.Canceled (and not DeadlineExceeded).
func (e *Error) Is(target error) bool {
	if e.cause != nil {
		return target == e.cause || e.cause == context.DeadlineExceeded && target == os.ErrDeadlineExceeded
	}
	if e.Err == ErrTimeout {
		return target == context.DeadlineExceeded || target == os.ErrDeadlineExceeded
	}
	return false
}

// Timeout and Temporary make *Error a net.Error.
func (e *Error) Timeout() bool   { return e.Err == ErrTimeout }
func (e *Error) Temporary() bool { return e.Err == ErrTimeout || e.Err == ErrUnavailable }

// sentinelFor maps the agent's error codes onto the sentinels, as libcolo's statusFor does.
func sentinelFor(code string) error {
	switch code {
	case "not_found":
		return ErrNotFound
	case "permission_denied":
		return ErrDenied
	case "refused":
		return ErrRefused
	case "timeout":
		return ErrTimeout
	case "invalid_argument", "bad_request":
		return ErrInvalid
	case "already_exists":
		return ErrExists
	case "unavailable":
		return ErrUnavailable
	default:
		return ErrInternal
	}
}

func newError(op, target string, sentinel error, format string, args ...any) *Error {
	return &Error{Op: op, Target: target, Message: fmt.Sprintf(format, args...), Err: sentinel}
}
