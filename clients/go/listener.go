package colo

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// Listener serves a colo name: a net.Listener, so http.Serve and grpc.Server.Serve run on it
// unchanged. Each accepted connection is a *Conn whose Peer (and RemoteAddr) is the dialing pod.
// The name is held by the Listener's own connection to colo-node and released when it closes.
type Listener struct {
	ac     *agentConn
	name   string
	mu     sync.Mutex // one Accept reads at a time
	closed atomic.Bool
}

// Listen registers name (1 to 63 of [a-z0-9.-]) in this pod's namespace, or "port/<n>": this pod
// serves its TCP port n over colo too, and a dial of a Service (or of this pod) by Kubernetes name
// from a pod on this node gets a Unix pair to it.
func Listen(ctx context.Context, name string) (*Listener, error) {
	ac, err := dialAgent(ctx, "listen")
	if err != nil {
		return nil, err
	}
	c := caller{conn: ac}
	var r struct {
		Name string `json:"name"`
	}
	if _, err := c.call(ctx, "listen", name, map[string]any{"name": name}, &r); err != nil {
		ac.close()
		return nil, err
	}
	if r.Name == "" {
		r.Name = name
	}
	return &Listener{ac: ac, name: r.Name}, nil
}

// Name is the registered name, "namespace/name".
func (l *Listener) Name() string { return l.name }

// Addr is an *Addr with the registered name.
func (l *Listener) Addr() net.Addr { return &Addr{Name: l.name} }

// Close releases the name. A blocked Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	return l.ac.close()
}

// Accept waits for the next connection; it is AcceptContext without a deadline.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptContext(context.Background())
	if err != nil {
		return nil, err
	}
	return c, nil
}

type incoming struct {
	Name string   `json:"name"`
	Peer Identity `json:"peer"`
}

// AcceptContext waits for the next connection until the context ends.
func (l *Listener) AcceptContext(ctx context.Context) (*Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.ac.watch(ctx)()
	for {
		p, err := l.ac.recv()
		if err != nil {
			switch {
			case l.closed.Load() || errors.Is(err, net.ErrClosed):
				return nil, net.ErrClosed
			case ctx.Err() != nil:
				return nil, &Error{Op: "accept", Target: l.name, Message: ctx.Err().Error(), Err: ErrTimeout}
			default:
				return nil, newError("accept", l.name, ErrUnreachable, "colo-node went away: %v", err)
			}
		}
		if p.env.Event != "incoming" {
			p.closeFds() // not for us (a newer agent's event): skip it
			continue
		}
		var ev incoming
		if err := json.Unmarshal(p.body, &ev); err != nil || len(p.fds) != 1 {
			p.closeFds()
			continue // a malformed event costs that one dial, not the listener
		}
		nc, err := connFromFd(p.fds[0])
		if err != nil {
			continue
		}
		if ev.Name == "" {
			ev.Name = l.name
		}
		return &Conn{Conn: nc, transport: TransportUnix, peer: ev.Peer, name: ev.Name}, nil
	}
}
