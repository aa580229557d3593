package colo

// These tests hold the client to docs/protocol.md against a scripted agent on a private socket
// ($COLO_SOCKET): framing, ids, descriptors, errors. The real colo-node is exercised by
// test/integration/interop_test.sh.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type script func(t *testing.T, c *net.UnixConn)

// agent serves each connection with the next script, in order.
func agent(t *testing.T, scripts ...script) {
	path := filepath.Join(t.TempDir(), "colo.sock")
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	t.Setenv("COLO_SOCKET", path)
	go func() {
		for _, s := range scripts {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			go func(s script) {
				defer c.Close()
				s(t, c)
			}(s)
		}
	}()
}

func readReq(t *testing.T, c *net.UnixConn) map[string]any {
	buf := make([]byte, maxMessage)
	n, err := c.Read(buf)
	if err != nil || n == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		t.Errorf("request is not JSON: %q", buf[:n])
	}
	if m["v"] != float64(1) {
		t.Errorf("request without v: 1: %v", m)
	}
	return m
}

func reply(c *net.UnixConn, body map[string]any, fds ...int) {
	b, _ := json.Marshal(body)
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	c.WriteMsgUnix(b, oob, nil)
}

func socketpair(t *testing.T) (mine int, theirs int) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

func TestAgentErrorsMatchTheirSentinels(t *testing.T) {
	codes := map[string]error{
		"not_found": ErrNotFound, "permission_denied": ErrDenied, "refused": ErrRefused, "timeout": ErrTimeout,
		"invalid_argument": ErrInvalid, "bad_request": ErrInvalid, "already_exists": ErrExists,
		"unavailable": ErrUnavailable, "internal": ErrInternal, "something_new": ErrInternal,
	}
	agent(t, func(t *testing.T, c *net.UnixConn) {
		for req := readReq(t, c); req != nil; req = readReq(t, c) {
			reply(c, map[string]any{"v": 1, "id": req["id"], "ok": false, "error": map[string]any{"code": req["target"], "message": "because"}})
		}
	})
	client, err := Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for code, sentinel := range codes {
		_, err := client.Dial(context.Background(), code)
		var ce *Error
		if !errors.Is(err, sentinel) || !errors.As(err, &ce) || ce.Code != code || ce.Message != "because" || ce.Op != "dial" {
			t.Errorf("%s: got %v, want %v", code, err, sentinel)
		}
	}
	_, err = client.Dial(context.Background(), "timeout")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the agent's timeout should match context.DeadlineExceeded: %v", err)
	}
}

func TestNoAgentIsUnreachable(t *testing.T) {
	t.Setenv("COLO_SOCKET", filepath.Join(t.TempDir(), "none.sock"))
	if _, err := Open(context.Background()); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("got %v", err)
	}
}

// A dial whose context ends gives ErrTimeout (cancelled: context.Canceled); its agent connection
// is dropped, so colo-node sees the request abandoned, and the next dial on the same Client goes
// on a fresh connection instead of waiting behind it.
func TestAbandonedDialDropsItsConnection(t *testing.T) {
	abandoned := make(chan struct{}, 2)
	silent := func(t *testing.T, c *net.UnixConn) { // answers nothing; notes when the client hangs up
		req := readReq(t, c)
		if ms := req["timeoutMs"].(float64); ms > 100 && ms != float64(defaultDialTimeout.Milliseconds()) {
			t.Errorf("timeoutMs %v does not follow the context", ms)
		}
		buf := make([]byte, 16)
		if n, _ := c.Read(buf); n == 0 {
			abandoned <- struct{}{}
		}
	}
	agent(t, silent, silent, func(t *testing.T, c *net.UnixConn) {
		req := readReq(t, c)
		mine, theirs := socketpair(t)
		defer syscall.Close(mine)
		reply(c, map[string]any{"v": 1, "id": req["id"], "ok": true, "transport": "unix", "name": "shop/echo",
			"peer":  map[string]any{"namespace": "shop", "name": "echo-0", "uid": "u1", "key": "u1"},
			"route": map[string]any{"via": "unix", "why": "on this node"}}, theirs)
		syscall.Close(theirs)
		syscall.Write(mine, []byte("hi"))
		time.Sleep(200 * time.Millisecond)
	})
	client, err := Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := client.Dial(ctx, "shop/echo"); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first dial: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	if _, err := client.Dial(ctx2, "shop/echo"); !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled dial: %v", err)
	}
	for i := 0; i < 2; i++ {
		select {
		case <-abandoned:
		case <-time.After(2 * time.Second):
			t.Fatal("an abandoned dial's connection stayed open")
		}
	}
	start := time.Now()
	conn, err := client.Dial(context.Background(), "shop/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if time.Since(start) > time.Second {
		t.Errorf("the next dial waited %v", time.Since(start))
	}
	if conn.Transport() != TransportUnix || conn.Peer().Name != "echo-0" || conn.Name() != "shop/echo" {
		t.Fatalf("conn: %v %+v %q", conn.Transport(), conn.Peer(), conn.Name())
	}
	if r := conn.Route(); r == nil || r.Via != "unix" || r.Why != "on this node" {
		t.Fatalf("route: %+v", r)
	}
	if id, ok := IdentityOf(conn.RemoteAddr()); !ok || id.String() != "shop/echo-0" {
		t.Fatalf("RemoteAddr identity: %v %v", id, ok)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read through the handed-over socket: %q %v", buf, err)
	}
}

// Bad targets and names are refused here with ErrInvalid, as in every client, before any request.
func TestBadTargetsAreInvalid(t *testing.T) {
	agent(t, func(t *testing.T, c *net.UnixConn) { time.Sleep(500 * time.Millisecond) })
	client, err := Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, target := range []string{strings.Repeat("a", 70000), strings.Repeat("a", 600), "", "shop/echo x", "a\nb", "caf\u00e9"} {
		if _, err := client.Dial(context.Background(), target); !errors.Is(err, ErrInvalid) {
			t.Errorf("dial %.20q: %v", target, err)
		}
	}
	for _, name := range []string{"port/080", "port/0", "port/65536", "port/", "Echo", strings.Repeat("a", 64), ""} {
		if _, err := Listen(context.Background(), name); !errors.Is(err, ErrInvalid) {
			t.Errorf("listen %.20q: %v", name, err)
		}
	}
}

// colo-node may close a connection it found idle: the next request reconnects once.
func TestReconnectsAfterTheAgentClosedAnIdleConnection(t *testing.T) {
	agent(t,
		func(t *testing.T, c *net.UnixConn) {}, // closed at once, unread
		func(t *testing.T, c *net.UnixConn) {
			req := readReq(t, c)
			reply(c, map[string]any{"v": 1, "id": req["id"], "ok": true, "identity": map[string]any{"namespace": "shop", "name": "cart", "node": "n1"}})
		})
	client, err := Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	time.Sleep(50 * time.Millisecond)
	h, err := client.Hello(context.Background())
	if err != nil || h.Identity.String() != "shop/cart" || h.Identity.Node != "n1" {
		t.Fatalf("hello: %+v %v", h, err)
	}
}

// A Listener is a net.Listener: net/http serves on it unchanged and sees who called.
func TestHTTPServesOnAListenerAndSeesThePeer(t *testing.T) {
	dialer := make(chan int, 1)
	agent(t, func(t *testing.T, c *net.UnixConn) {
		req := readReq(t, c)
		if req["op"] != "listen" || req["name"] != "web" {
			t.Errorf("listen request: %v", req)
		}
		reply(c, map[string]any{"v": 1, "id": req["id"], "ok": true, "name": "shop/web"})
		mine, theirs := socketpair(t)
		dialer <- mine
		reply(c, map[string]any{"v": 1, "event": "something-newer"}) // ignored
		reply(c, map[string]any{"v": 1, "event": "incoming", "name": "shop/web",
			"peer": map[string]any{"namespace": "shop", "name": "cart", "uid": "u2", "key": "u2"}}, theirs)
		syscall.Close(theirs)
		time.Sleep(2 * time.Second)
	})
	l, err := Listen(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if l.Name() != "shop/web" || l.Addr().String() != "shop/web" {
		t.Fatalf("name %q", l.Name())
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello " + r.RemoteAddr))
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	fd := <-dialer
	conn, err := connFromFd(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	body, _ := io.ReadAll(conn)
	if want := "hello shop/cart"; !strings.Contains(string(body), want) {
		t.Fatalf("response %q lacks %q", body, want)
	}
	l.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not unblock Accept")
	}
}

// colo-node restarting under a Listener: Accept keeps waiting, the name is registered again on a
// new connection, and the next incoming connection is delivered; only Close ends Accept.
func TestListenerListensAgainAfterAgentRestart(t *testing.T) {
	listen := func(t *testing.T, c *net.UnixConn) map[string]any {
		req := readReq(t, c)
		if req["op"] != "listen" || req["name"] != "echo" {
			t.Errorf("request: %v", req)
		}
		reply(c, map[string]any{"v": 1, "id": req["id"], "ok": true, "name": "shop/echo"})
		return req
	}
	agent(t, func(t *testing.T, c *net.UnixConn) { listen(t, c) }, // then the agent goes away
		func(t *testing.T, c *net.UnixConn) {
			listen(t, c)
			_, theirs := socketpair(t)
			reply(c, map[string]any{"v": 1, "event": "incoming", "name": "shop/echo",
				"peer": map[string]any{"namespace": "shop", "name": "cart-0"}}, theirs)
			syscall.Close(theirs)
			time.Sleep(time.Second)
		})
	l, err := Listen(context.Background(), "echo")
	if err != nil {
		t.Fatal(err)
	}
	var events []error
	l.OnReconnect = func(name string, err error) { events = append(events, err) }
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := l.AcceptContext(ctx)
	if err != nil {
		t.Fatalf("accept across the restart: %v", err)
	}
	conn.Close()
	if conn.Peer().Name != "cart-0" || len(events) != 2 || events[0] == nil || events[1] != nil {
		t.Fatalf("peer %+v, reconnect events %v", conn.Peer(), events)
	}
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("accept after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a blocked Accept")
	}
}
