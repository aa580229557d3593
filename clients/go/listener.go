package colo

import (
	"context"
	"encoding/json"
	"log"
	"net"
	"sync"
	"time"
)

// Listener serves a colo name: a net.Listener, so http.Serve and grpc.Server.Serve run on it
// unchanged. Each accepted connection is a *Conn whose Peer (and RemoteAddr) is the dialing pod.
// The name is held by the Listener's own connection to colo-node and released when it closes.
//
// A Listener outlives colo-node: when the agent restarts (an upgrade), Accept keeps waiting while
// the Listener reconnects with bounded backoff and registers its name again. Only Close ends it.
type Listener struct {
	name      string // as registered: "namespace/name"
	requested string // as asked for, registered again after an agent restart

	// OnReconnect, when set before the first Accept, is told when colo-node went away (err) and
	// each time the name is registered again (err nil). When nil, both go to the standard logger.
	OnReconnect func(name string, err error)

	mu     sync.Mutex // one Accept reads at a time
	acMu   sync.Mutex // guards ac and closed against Close
	ac     *agentConn
	closed bool
	done   chan struct{} // closed by Close: wakes a reconnect back-off
}

// Listen registers name (1 to 63 of [a-z0-9.-]) in this pod's namespace, or "port/<n>": this pod
// serves its TCP port n over colo too, and a dial of a Service (or of this pod) by Kubernetes name
// from a pod on this node gets a Unix pair to it.
func Listen(ctx context.Context, name string) (*Listener, error) {
	if err := checkName("listen", name); err != nil {
		return nil, err
	}
	ac, registered, err := register(ctx, name)
	if err != nil {
		return nil, err
	}
	return &Listener{ac: ac, name: registered, requested: name, done: make(chan struct{})}, nil
}

// register opens an agent connection and listens on name with it.
func register(ctx context.Context, name string) (*agentConn, string, error) {
	ac, err := dialAgent(ctx, "listen")
	if err != nil {
		return nil, "", err
	}
	c := caller{conn: ac}
	var r struct {
		Name string `json:"name"`
	}
	if _, err := c.call(ctx, "listen", name, map[string]any{"name": name}, &r); err != nil {
		c.close()
		return nil, "", err
	}
	if r.Name == "" {
		r.Name = name
	}
	return c.conn, r.Name, nil // the caller may have reconnected once: the name is held by c.conn
}

// Name is the registered name, "namespace/name".
func (l *Listener) Name() string { return l.name }

// Addr is an *Addr with the registered name.
func (l *Listener) Addr() net.Addr { return &Addr{Name: l.name} }

// Close releases the name. A blocked Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	l.acMu.Lock()
	defer l.acMu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.done)
	if l.ac == nil {
		return nil
	}
	return l.ac.close()
}

func (l *Listener) conn() (*agentConn, bool) {
	l.acMu.Lock()
	defer l.acMu.Unlock()
	return l.ac, l.closed
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

// AcceptContext waits for the next connection until the context ends. When colo-node goes away
// it keeps waiting and listens again on the restarted agent.
func (l *Listener) AcceptContext(ctx context.Context) (*Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		ac, closed := l.conn()
		if closed {
			return nil, net.ErrClosed
		}
		if ac == nil {
			if err := l.relisten(ctx); err != nil {
				return nil, err
			}
			continue
		}
		conn, err := l.acceptOn(ctx, ac)
		if err == nil {
			return conn, nil
		}
		if _, closed := l.conn(); closed {
			return nil, net.ErrClosed
		}
		if ctx.Err() != nil {
			return nil, &Error{Op: "accept", Target: l.name, Message: ctx.Err().Error(), Err: ErrTimeout}
		}
		// colo-node went away (restart, upgrade): drop this connection and listen again.
		l.report(err)
		l.acMu.Lock()
		if l.ac == ac {
			ac.close()
			l.ac = nil
		}
		l.acMu.Unlock()
	}
}

func (l *Listener) acceptOn(ctx context.Context, ac *agentConn) (*Conn, error) {
	defer ac.watch(ctx)()
	for {
		p, err := ac.recv()
		if err != nil {
			return nil, err
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

const (
	relistenFirst = 50 * time.Millisecond
	relistenMax   = 2 * time.Second
)

// relisten registers the name again on a new agent connection, backing off from 50 ms to 2 s
// between attempts, until it works, the context ends or Close is called.
func (l *Listener) relisten(ctx context.Context) error {
	wait := relistenFirst
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ac, _, err := register(actx, l.requested)
		cancel()
		if err == nil {
			l.acMu.Lock()
			if l.closed {
				l.acMu.Unlock()
				ac.close()
				return net.ErrClosed
			}
			l.ac = ac
			l.acMu.Unlock()
			l.report(nil)
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return net.ErrClosed
		case <-ctx.Done():
			t.Stop()
			return &Error{Op: "accept", Target: l.name, Message: "colo-node not back yet: " + ctx.Err().Error(), Err: ErrTimeout}
		}
		if wait *= 2; wait > relistenMax {
			wait = relistenMax
		}
	}
}

func (l *Listener) report(err error) {
	if l.OnReconnect != nil {
		l.OnReconnect(l.name, err)
		return
	}
	if err != nil {
		log.Printf("colo: listener %s: colo-node went away (%v); listening again when it is back", l.name, err)
	} else {
		log.Printf("colo: listener %s: colo-node is back; listening again", l.name)
	}
}
