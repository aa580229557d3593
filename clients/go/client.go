package colo

import (
	"context"
	"net"
	"time"
)

// Client is a connection to this pod's colo-node for Hello, Dial and channels. It is safe for
// concurrent use; requests on it are served one at a time. A request whose context ends drops the
// connection (colo-node then stops working on it) and the next request opens a fresh one, so
// nothing waits behind an abandoned dial.
type Client struct {
	c caller
}

// Open connects to colo-node (at $COLO_SOCKET, else @colo).
func Open(ctx context.Context) (*Client, error) {
	ac, err := dialAgent(ctx, "open")
	if err != nil {
		return nil, err
	}
	return &Client{c: caller{conn: ac}}, nil
}

// Close closes the connection to colo-node. Connections and channels it made stay open.
func (c *Client) Close() error { return c.c.close() }

// Hello is what colo-node says about the calling pod.
type Hello struct {
	Identity Identity `json:"identity"`
	Peer     struct {
		PID int    `json:"pid"`
		UID int    `json:"uid"`
		GID int    `json:"gid"`
		Via string `json:"via"`
	} `json:"peer"`
	Agent struct {
		Version      string   `json:"version"`
		Protocol     int      `json:"protocol"`
		Capabilities []string `json:"capabilities"`
	} `json:"agent"`
	Hugepages *struct {
		Bytes    uint64 `json:"bytes"`
		HostPath string `json:"hostPath"`
	} `json:"hugepages"`
}

// Hello asks colo-node who this pod is.
func (c *Client) Hello(ctx context.Context) (*Hello, error) {
	var h Hello
	if _, err := c.c.call(ctx, "hello", "", nil, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

const (
	defaultDialTimeout = 2 * time.Second
	maxDialTimeout     = 10 * time.Second
)

type dialReply struct {
	Transport string `json:"transport"`
	Name      string `json:"name"`
	Route     *Route `json:"route"`
	Peer      struct {
		Identity
		Address string `json:"address"`
	} `json:"peer"`
}

// Dial connects to target: "namespace/name" or "name" (a name served on this node: a Unix pair
// with the listener's identity), or "ip:port" / "[ipv6]:port" (TCP, connected by colo-node from
// inside this pod's network namespace), or, when colo-node runs in Kubernetes mode,
// "service/<ns>/<name>:<port or port name>" or "pod/<ns>/<name>:<port>": the nearest way there (a
// Unix pair to a backend on this node that listens on "port/<targetPort>", else TCP to a backend's
// pod IP on this node, else TCP to the ClusterIP); Conn.Route says which and why. The context's deadline bounds the whole dial (2 s when it
// has none; colo-node allows at most 10 s).
func (c *Client) Dial(ctx context.Context, target string) (*Conn, error) {
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	timeout := defaultDialTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
		if timeout <= 0 {
			return nil, newError("dial", target, ErrTimeout, "deadline already passed")
		}
	} else {
		// The agent bounds its own wait by timeoutMs; the reply gets a second more.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout+time.Second)
		defer cancel()
	}
	if timeout > maxDialTimeout {
		timeout = maxDialTimeout
	}
	ms := timeout.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	var r dialReply
	fds, err := c.c.call(ctx, "dial", target, map[string]any{"target": target, "timeoutMs": ms}, &r)
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		closeAll(fds)
		return nil, newError("dial", target, ErrProtocol, "reply carried %d descriptors, not 1", len(fds))
	}
	nc, err := connFromFd(fds[0])
	if err != nil {
		return nil, newError("dial", target, ErrInternal, "adopting the socket: %v", err)
	}
	conn := &Conn{Conn: nc, transport: Transport(r.Transport), name: r.Name, address: r.Peer.Address, route: r.Route}
	if conn.transport == TransportUnix {
		conn.peer = r.Peer.Identity
	}
	return conn, nil
}

// DialContext is Dial as a net.Conn: the signature grpc.WithContextDialer takes.
//
//	grpc.Dial("passthrough:///shop/echo", grpc.WithContextDialer(client.DialContext), ...)
func (c *Client) DialContext(ctx context.Context, target string) (net.Conn, error) {
	conn, err := c.Dial(ctx, target)
	if err != nil {
		return nil, err
	}
	return conn, nil
}
