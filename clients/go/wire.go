package colo

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// The wire protocol (docs/protocol.md): SOCK_SEQPACKET, one JSON object per packet, at most 64 KiB
// and 8 descriptors (SCM_RIGHTS on the same packet).
const (
	protocolVersion = 1
	maxMessage      = 64 * 1024
	maxFds          = 8
)

// AgentSocket is where colo-node is found: $COLO_SOCKET, else the abstract socket @colo of the
// pod's network namespace.
func AgentSocket() string {
	if p := os.Getenv("COLO_SOCKET"); p != "" {
		return p
	}
	return "@colo"
}

// envelope is the part of every reply and event this package reads first.
type envelope struct {
	V     int     `json:"v"`
	ID    *uint64 `json:"id"`
	OK    bool    `json:"ok"`
	Event string  `json:"event"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// packet is one received message: its JSON text and the descriptors that came with it.
type packet struct {
	body []byte
	env  envelope
	fds  []int
}

func (p *packet) closeFds() {
	for _, fd := range p.fds {
		syscall.Close(fd)
	}
	p.fds = nil
}

// agentConn is one connection to colo-node. Requests and replies alternate on it.
type agentConn struct {
	c   *net.UnixConn
	buf []byte
	oob []byte
}

func dialAgent(ctx context.Context, op string) (*agentConn, error) {
	path := AgentSocket()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, newError(op, "", ErrTimeout, "connecting to colo-node at %s: %v", path, ctx.Err())
		}
		return nil, newError(op, "", ErrUnreachable, "cannot reach colo-node at %s: %v", path, err)
	}
	return &agentConn{c: c.(*net.UnixConn), buf: make([]byte, maxMessage+1), oob: make([]byte, syscall.CmsgSpace(maxFds*4))}, nil
}

func (a *agentConn) close() error { return a.c.Close() }

// watch applies the context to the connection: its deadline, and cancellation (which moves the
// deadline to now so that a blocked read or write returns). The returned func undoes it.
func (a *agentConn) watch(ctx context.Context) func() {
	d, _ := ctx.Deadline()
	a.c.SetDeadline(d)
	if ctx.Done() == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			a.c.SetDeadline(time.Unix(1, 0))
		case <-stop:
		}
	}()
	return func() {
		close(stop)
		<-done
		a.c.SetDeadline(time.Time{})
	}
}

func (a *agentConn) send(body []byte) error {
	if len(body) > maxMessage {
		return errors.New("request over 64 KiB")
	}
	_, err := a.c.Write(body)
	return err
}

// recv reads one packet. io.EOF means the agent closed the connection.
func (a *agentConn) recv() (*packet, error) {
	n, oobn, flags, _, err := a.c.ReadMsgUnix(a.buf, a.oob)
	p := &packet{}
	if oobn > 0 {
		p.fds = parseRights(a.oob[:oobn])
	}
	if err != nil {
		p.closeFds()
		return nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, io.EOF
	}
	if n > maxMessage || flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		p.closeFds()
		return nil, errors.New("message or its descriptors truncated")
	}
	p.body = append([]byte(nil), a.buf[:n]...)
	if err := json.Unmarshal(p.body, &p.env); err != nil {
		p.closeFds()
		return nil, errors.New("not a JSON object: " + err.Error())
	}
	return p, nil
}

// parseRights takes the descriptors out of SCM_RIGHTS control messages and marks them
// close-on-exec (Go 1.19's ReadMsgUnix does not pass MSG_CMSG_CLOEXEC).
func parseRights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		got, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range got {
			syscall.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	return fds
}

// caller serializes requests on one agent connection and reconnects once when colo-node closed
// an idle connection before the request reached it.
type caller struct {
	mu     sync.Mutex
	conn   *agentConn
	nextID uint64
	closed bool
}

// call sends {"v":1,"id":N,"op":op,...fields} and waits for the reply with that id. On success the
// op-specific fields are decoded into out (when not nil) and the reply's descriptors returned.
func (c *caller) call(ctx context.Context, op, target string, fields map[string]any, out any) ([]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, newError(op, target, ErrInvalid, "client closed")
	}
	for attempt := 0; ; attempt++ {
		if c.conn == nil {
			ac, err := dialAgent(ctx, op)
			if err != nil {
				return nil, err
			}
			c.conn = ac
		}
		fds, err, retry := c.roundTrip(ctx, op, target, fields, out)
		if retry && attempt == 0 && ctx.Err() == nil {
			if c.conn != nil {
				c.conn.close()
				c.conn = nil
			}
			continue
		}
		return fds, err
	}
}

func (c *caller) roundTrip(ctx context.Context, op, target string, fields map[string]any, out any) (fds []int, err error, retry bool) {
	c.nextID++
	id := c.nextID
	req := map[string]any{"v": protocolVersion, "id": id, "op": op}
	for k, v := range fields {
		req[k] = v
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, newError(op, target, ErrInvalid, "encoding the request: %v", err), false
	}
	defer c.conn.watch(ctx)()
	if len(body) > maxMessage {
		return nil, newError(op, shorten(target), ErrInvalid, "request over 64 KiB"), false
	}
	if err := c.conn.send(body); err != nil {
		e := c.ioError(ctx, op, target, err)
		c.conn.close()
		c.conn = nil
		return nil, e, isClosed(err) && ctx.Err() == nil
	}
	for {
		p, err := c.conn.recv()
		if err != nil {
			// Timed out, cancelled or out of step with the agent: start afresh next time. Closing
			// tells colo-node to drop the request, and the next one does not queue behind it.
			e := c.ioError(ctx, op, target, err)
			c.conn.close()
			c.conn = nil
			return nil, e, isClosed(err) && ctx.Err() == nil
		}
		if p.env.ID == nil || *p.env.ID != id {
			p.closeFds() // the late reply to a request whose caller gave up
			continue
		}
		if !p.env.OK {
			p.closeFds()
			if p.env.Error == nil {
				return nil, newError(op, target, ErrProtocol, "reply has neither ok nor error"), false
			}
			return nil, &Error{Op: op, Target: target, Code: p.env.Error.Code, Message: p.env.Error.Message, Err: sentinelFor(p.env.Error.Code)}, false
		}
		if out != nil {
			if err := json.Unmarshal(p.body, out); err != nil {
				p.closeFds()
				return nil, newError(op, target, ErrProtocol, "decoding the reply: %v", err), false
			}
		}
		return p.fds, nil, false
	}
}

func (c *caller) ioError(ctx context.Context, op, target string, err error) *Error {
	if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
		cause := ctx.Err()
		if cause == nil {
			cause = err
		}
		e := newError(op, target, ErrTimeout, "no reply from colo-node: %v", cause)
		e.cause = ctx.Err()
		return e
	}
	return newError(op, target, ErrUnreachable, "colo-node connection: %v", err)
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

func (c *caller) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn == nil {
		return nil
	}
	err := c.conn.close()
	c.conn = nil
	return err
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}
