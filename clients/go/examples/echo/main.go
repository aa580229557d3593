// Echo over colo in Go, speaking with libcolo's echo_server and echo_client (and the Python
// example) byte for byte: the same code serves pods on this node (a colo name: a Unix pair,
// upgraded to a shared-memory channel) and clients elsewhere (a TCP port).
//
//	echo serve NAME [TCP_PORT]
//	echo dial TARGET [MESSAGE] [--count N] [--channel-bytes B] [--no-channel]
//	echo whoami
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"colo.dev/colo"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "dial":
		err = dial(os.Args[2:])
	case "whoami":
		err = whoami()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "echo: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: echo serve NAME [TCP_PORT] | dial TARGET [MESSAGE] [--count N] [--channel-bytes B] [--no-channel] | whoami")
	os.Exit(2)
}

func whoami() error {
	c, err := colo.Open(context.Background())
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := c.Hello(context.Background())
	if err != nil {
		return err
	}
	fmt.Printf("I am %s (uid %s) on node %s\n", h.Identity, h.Identity.UID, h.Identity.Node)
	return nil
}

func serve(args []string) error {
	if len(args) < 1 {
		usage()
	}
	l, err := colo.Listen(context.Background(), args[0])
	if err != nil {
		return fmt.Errorf("listen %s: %w", args[0], err)
	}
	if len(args) > 1 {
		tcp, err := net.Listen("tcp", ":"+args[1])
		if err != nil {
			return err
		}
		fmt.Printf("listening on colo name %s and tcp port %s\n", args[0], args[1])
		go acceptLoop(tcp)
	} else {
		fmt.Printf("listening on colo name %s\n", args[0])
	}
	return acceptLoop(l)
}

// acceptLoop is the same for both listeners: what differs is only what the connection can do.
func acceptLoop(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		if cc, ok := c.(*colo.Conn); ok {
			fmt.Printf("accepted unix from %s\n", cc.Peer())
			go echoChannel(cc)
		} else {
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Printf("accepted tcp from %s\n", host)
			go func() { io.Copy(c, c); c.Close() }()
		}
	}
}

// echoChannel takes the channel the dialer offers, or echoes the stream when it offers none.
func echoChannel(c *colo.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	ch, err := colo.AcceptChannel(ctx, c)
	cancel()
	if errors.Is(err, colo.ErrProtocol) {
		io.Copy(c, c) // the peer wrote ordinary bytes first: a plain stream
		return
	}
	if err != nil {
		fmt.Printf("no channel from %s: %v\n", c.Peer(), err)
		return
	}
	defer ch.Close()
	fmt.Printf("channel from %s (memory %s)\n", c.Peer(), ch.Memory())
	for n := 0; ; n++ {
		in, err := ch.Read(context.Background())
		if err != nil {
			fmt.Printf("channel from %s ended after %d messages: %v\n", c.Peer(), n, err)
			return
		}
		out, err := ch.Reserve(context.Background(), len(in))
		if err != nil {
			return
		}
		copy(out, in)
		ch.Release()
		ch.Commit(len(in))
	}
}

func dial(args []string) error {
	if len(args) < 1 {
		usage()
	}
	target, message, count, channelBytes, useChannel := args[0], "hello through colo", 1, uint64(1<<20), true
	for i := 1; i < len(args); i++ {
		switch {
		case args[i] == "--count" && i+1 < len(args):
			i++
			count, _ = strconv.Atoi(args[i])
		case args[i] == "--channel-bytes" && i+1 < len(args):
			i++
			channelBytes, _ = strconv.ParseUint(args[i], 10, 64)
		case args[i] == "--no-channel":
			useChannel = false
		default:
			message = args[i]
		}
	}
	client, err := colo.Open(context.Background())
	if err != nil {
		return err
	}
	defer client.Close()
	conn, err := client.Dial(context.Background(), target)
	if err != nil {
		return fmt.Errorf("dial %s: %w", target, err) // errors.Is(err, colo.ErrDenied) etc.
	}
	defer conn.Close()
	if r := conn.Route(); r != nil { // a Kubernetes name: how colo-node resolved it
		fmt.Printf("route %s: %s\n", r.Via, r.Why)
	}
	msg := []byte(message)
	if conn.Transport() == colo.TransportTCP || !useChannel {
		if conn.Transport() == colo.TransportTCP {
			fmt.Printf("transport tcp, peer %s\n", conn.Address())
		} else {
			fmt.Printf("transport unix, peer %s\n", conn.Peer())
		}
		back := make([]byte, len(msg))
		for i := 0; i < count; i++ {
			if _, err := conn.Write(msg); err != nil {
				return err
			}
			if _, err := io.ReadFull(conn, back); err != nil || !bytes.Equal(back, msg) {
				return fmt.Errorf("echo failed: %v", err)
			}
		}
		fmt.Printf("echo ok: %s (x%d)\n", message, count)
		return nil
	}
	// 5 s for the set-up, and a millisecond more per echo.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second+time.Duration(count)*time.Millisecond)
	defer cancel()
	ch, err := client.OpenChannel(ctx, conn, channelBytes)
	if err != nil {
		return fmt.Errorf("channel: %w", err)
	}
	defer ch.Close()
	fmt.Printf("transport unix, peer %s, then channel (memory %s)\n", conn.Peer(), ch.Memory())
	for i := 0; i < count; i++ {
		if err := ch.Send(ctx, msg); err != nil {
			return fmt.Errorf("channel echo %d failed: %w", i, err)
		}
		in, err := ch.Read(ctx)
		if err != nil {
			return fmt.Errorf("channel echo %d failed: %w", i, err)
		}
		same := bytes.Equal(in, msg)
		ch.Release()
		if !same {
			return fmt.Errorf("channel echo %d failed: echo mismatch", i)
		}
	}
	fmt.Printf("echo ok: %s (x%d)\n", message, count)
	return nil
}
