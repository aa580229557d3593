// A gRPC service and its client over colo. The server serves one grpc.Server on a colo name (pods
// on this node reach it over a Unix pair, with their identity) and on a TCP port (everyone else);
// the client dials through colo-node with grpc.WithContextDialer, so the same code gets a Unix
// pair when the server is on this node and TCP from its own netns when it is not.
//
//	grpc-echo serve NAME TCP_PORT
//	grpc-echo call TARGET MESSAGE       TARGET: a colo name or ip:port
//
// The service is written by hand (no protoc): one unary method, colo.example.Echo/Say, taking and
// returning a google.protobuf.StringValue (Debian's protobuf 1.3 runtime, which grpc 1.33 uses).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"colo.dev/colo"
	"github.com/golang/protobuf/ptypes/wrappers"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

type echoServer interface {
	Say(context.Context, *wrappers.StringValue) (*wrappers.StringValue, error)
}

var echoService = grpc.ServiceDesc{
	ServiceName: "colo.example.Echo",
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Say",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrappers.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(echoServer).Say(ctx, in)
		},
	}},
	Metadata: "colo/example/echo",
}

type echo struct{}

// Say answers with who called: a colo identity over a Unix pair, an address over TCP.
func (echo) Say(ctx context.Context, in *wrappers.StringValue) (*wrappers.StringValue, error) {
	from := "unknown"
	if p, ok := peer.FromContext(ctx); ok {
		if id, isColo := colo.IdentityOf(p.Addr); isColo {
			from = id.String() + " over unix"
		} else if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			from = host + " over tcp"
		}
	}
	return &wrappers.StringValue{Value: fmt.Sprintf("%s (from %s)", in.GetValue(), from)}, nil
}

func serve(name, port string) error {
	s := grpc.NewServer()
	s.RegisterService(&echoService, echo{})
	l, err := colo.Listen(context.Background(), name)
	if err != nil {
		return err
	}
	tcp, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	fmt.Printf("serving colo.example.Echo on colo name %s and tcp port %s\n", l.Name(), port)
	errs := make(chan error, 2)
	go func() { errs <- s.Serve(l) }()
	go func() { errs <- s.Serve(tcp) }()
	return <-errs
}

func call(target, message string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := colo.Open(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	// The dialer is colo's; this wrapper only remembers what it got, to print it.
	var mu sync.Mutex
	var last *colo.Conn
	var lastErr error
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := client.Dial(ctx, addr)
		mu.Lock()
		defer mu.Unlock()
		last, lastErr = c, err
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	conn, err := grpc.DialContext(ctx, "passthrough:///"+target, grpc.WithContextDialer(dialer), grpc.WithInsecure(),
		grpc.WithBlock(), grpc.FailOnNonTempDialError(true))
	mu.Lock()
	dialErr := lastErr
	mu.Unlock()
	if errors.Is(dialErr, colo.ErrDenied) {
		return fmt.Errorf("denied by policy: %w", dialErr)
	}
	if err != nil {
		return fmt.Errorf("grpc dial %s: %v (last dial: %v)", target, err, dialErr)
	}
	defer conn.Close()
	out := new(wrappers.StringValue)
	if err := conn.Invoke(ctx, "/colo.example.Echo/Say", &wrappers.StringValue{Value: message}, out); err != nil {
		return err
	}
	mu.Lock()
	via := string(last.Transport())
	if last.Transport() == colo.TransportUnix {
		via += " to " + last.Peer().String()
	}
	mu.Unlock()
	fmt.Printf("reply: %s via %s\n", out.GetValue(), via)
	return nil
}

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "serve":
		err = serve(os.Args[2], os.Args[3])
	case len(os.Args) == 4 && os.Args[1] == "call":
		err = call(os.Args[2], os.Args[3])
	default:
		fmt.Fprintln(os.Stderr, "usage: grpc-echo serve NAME TCP_PORT | call TARGET MESSAGE")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpc-echo: %v\n", err)
		os.Exit(1)
	}
}
