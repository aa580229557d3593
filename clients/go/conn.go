package colo

import (
	"net"
	"os"
	"syscall"
)

// Identity is a pod as colo-node knows it (from the API or the CNI call, never from the pod).
type Identity struct {
	Namespace      string   `json:"namespace"`
	Name           string   `json:"name"`
	UID            string   `json:"uid"`
	Key            string   `json:"key"`
	Node           string   `json:"node,omitempty"`           // Hello only
	IPs            []string `json:"ips,omitempty"`            // Hello only
	ServiceAccount string   `json:"serviceAccount,omitempty"` // Kubernetes mode
}

// String is "namespace/name".
func (id Identity) String() string { return id.Namespace + "/" + id.Name }

// Transport says how a connection travels.
type Transport string

const (
	TransportUnix Transport = "unix" // a Unix socket pair between two pods of this node
	TransportTCP  Transport = "tcp"  // TCP, connected by colo-node from inside this pod's netns
)

// Addr is the address of either end of a colo Unix pair: the name dialed or served, and, for the
// remote end, the pod behind it. It is what net/http's Request.RemoteAddr and gRPC's peer.Peer
// carry, so a handler can tell who called with IdentityOf.
type Addr struct {
	Name string   // the colo name, "namespace/name"
	Peer Identity // the pod at this end (empty for the local end)
}

func (a *Addr) Network() string { return "colo" }
func (a *Addr) String() string {
	if a.Peer.Name != "" {
		return a.Peer.String()
	}
	return a.Name
}

// IdentityOf returns the pod behind a remote address of a colo Unix connection (a Conn's
// RemoteAddr, or gRPC's peer.Peer.Addr). ok is false for TCP or anything else.
func IdentityOf(a net.Addr) (id Identity, ok bool) {
	if ca, isColo := a.(*Addr); isColo && ca.Peer.Name != "" {
		return ca.Peer, true
	}
	return Identity{}, false
}

// Conn is a connection colo-node handed over: a net.Conn (a *net.UnixConn or *net.TCPConn
// underneath) with how it travels and who is at the other end.
type Conn struct {
	net.Conn
	transport Transport
	peer      Identity
	name      string
	address   string
	route     *Route
}

// Route is how colo-node resolved a Kubernetes name: Via is "unix" (a backend on this node serving
// colo name port/<targetPort>), "pod-ip" (TCP to a backend's pod IP) or "cluster-ip" (TCP to the
// Service's ClusterIP); Why says why that one.
type Route struct {
	Via string `json:"via"`
	Why string `json:"why"`
}

// Route is how a Kubernetes name was resolved; nil for other targets.
func (c *Conn) Route() *Route { return c.route }

// Transport is TransportUnix or TransportTCP.
func (c *Conn) Transport() Transport { return c.transport }

// Peer is the pod at the other end of a Unix pair (empty for TCP).
func (c *Conn) Peer() Identity { return c.peer }

// Name is the colo name this connection was dialed or accepted on (Unix pairs).
func (c *Conn) Name() string { return c.name }

// Address is the ip:port of a TCP connection.
func (c *Conn) Address() string { return c.address }

// RemoteAddr is an *Addr carrying the peer's identity for a Unix pair, the TCP address otherwise.
func (c *Conn) RemoteAddr() net.Addr {
	if c.transport == TransportUnix {
		return &Addr{Name: c.name, Peer: c.peer}
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is an *Addr with the name for a Unix pair, the TCP address otherwise.
func (c *Conn) LocalAddr() net.Addr {
	if c.transport == TransportUnix {
		return &Addr{Name: c.name}
	}
	return c.Conn.LocalAddr()
}

// CloseWrite shuts down the writing side (both transports support it).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// connFromFd wraps a descriptor colo-node sent; the descriptor is consumed.
func connFromFd(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "colo")
	defer f.Close()
	return net.FileConn(f)
}

func unixConnOf(c net.Conn) (*net.UnixConn, bool) {
	for {
		switch v := c.(type) {
		case *net.UnixConn:
			return v, true
		case *Conn:
			c = v.Conn
		default:
			return nil, false
		}
	}
}

// dupFd returns a close-on-exec duplicate of the socket under c.
func dupFd(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	dup := -1
	var dupErr error
	if err := rc.Control(func(fd uintptr) {
		dup, dupErr = dupCloexec(int(fd))
	}); err != nil {
		return -1, err
	}
	return dup, dupErr
}
