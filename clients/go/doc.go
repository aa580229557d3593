// Package colo is the Go client of colo-node, the node agent that gives every opted-in pod a local
// endpoint (@colo, a SOCK_SEQPACKET Unix socket in the pod's network namespace). It speaks the wire
// protocol of docs/protocol.md directly: pure Go, no cgo.
//
// Over the endpoint a pod learns who it is (Client.Hello), serves a name (Listen returns a
// net.Listener, so net/http and gRPC servers run on it unchanged), and dials a name, an ip:port or
// a Kubernetes name (Client.Dial returns a net.Conn). A dial to a pod on the same node gives a
// connected Unix socket with the peer's identity; anything else gives a TCP socket that colo-node
// connected from inside this pod's network namespace. The same code works on both sides of the
// machine boundary.
//
// Two pods that hold a Unix pair can upgrade it to a Channel: two rings in shared memory, written
// and read in place (Reserve/Commit, Read/Release), with doorbell wake-ups (a Unix socketpair).
//
// Errors are *Error values; test them with errors.Is against the sentinels (ErrNotFound,
// ErrDenied, ErrTimeout, ...). A deadline from the context surfaces as ErrTimeout, which also
// matches context.DeadlineExceeded.
package colo
