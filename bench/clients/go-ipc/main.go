// colo-bench-go-ipc: the Go client's round trips against colo-bench-ipc's server, as
// colo-bench-ipc's own client measures them (bench/ipc_bench.cpp): a control record first ('E' +
// u32 size on a stream; a 1-byte 'E' message on a channel), then ping-pong of SIZE bytes, only the
// first 8 bytes of each channel message touched (written and read in place).
//
//	colo-bench-go-ipc --to NAME --via unix|channel --size S --iters N   -> "p50_us p99_us"
//	colo-bench-go-ipc local --size S --iters N                            (the rings in one process)
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"time"

	"colo.dev/colo"
	"golang.org/x/sys/unix"
)

const warmup = 1000

// pin keeps the calling goroutine on one OS thread on one CPU, as the C++ client pins itself.
func pin(cpu int) {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
}

func report(rtt []time.Duration) {
	if len(rtt) == 0 {
		fmt.Println("nan nan")
		return
	}
	sort.Slice(rtt, func(i, j int) bool { return rtt[i] < rtt[j] })
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	fmt.Printf("%.3f %.3f\n", us(rtt[len(rtt)/2]), us(rtt[len(rtt)*99/100]))
}

func pingChannel(ch *colo.Channel, size, iters int) []time.Duration {
	ctx := context.Background()
	rtt := make([]time.Duration, 0, iters)
	touch := size
	if touch > 8 {
		touch = 8
	}
	var scratch [8]byte
	for i := 0; i < iters+warmup; i++ {
		t0 := time.Now()
		out, err := ch.Reserve(ctx, size)
		if err != nil {
			break
		}
		copy(out[:touch], "xxxxxxxx")
		ch.Commit(size)
		in, err := ch.Read(ctx)
		if err != nil {
			break
		}
		copy(scratch[:], in[:touch])
		ch.Release()
		if i >= warmup {
			rtt = append(rtt, time.Since(t0))
		}
	}
	return rtt
}

func pingStream(c io.ReadWriter, size, iters int) []time.Duration {
	buf := make([]byte, size)
	rtt := make([]time.Duration, 0, iters)
	for i := 0; i < iters+warmup; i++ {
		t0 := time.Now()
		if _, err := c.Write(buf); err != nil {
			break
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			break
		}
		if i >= warmup {
			rtt = append(rtt, time.Since(t0))
		}
	}
	return rtt
}

// echoChannel is the far side for "local": two goroutines of one process on the same rings.
func echoChannel(ch *colo.Channel) {
	pin(1)
	ctx := context.Background()
	for {
		in, err := ch.Read(ctx)
		if err != nil {
			return
		}
		n := len(in)
		out, err := ch.Reserve(ctx, n)
		if err != nil {
			return
		}
		copy(out[:min(n, 8)], in[:min(n, 8)])
		ch.Release()
		ch.Commit(n)
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func main() {
	local := len(os.Args) > 1 && os.Args[1] == "local"
	args := os.Args[1:]
	if local {
		args = args[1:]
	}
	fs := flag.NewFlagSet("colo-bench-go-ipc", flag.ExitOnError)
	to := fs.String("to", "bench", "colo name of colo-bench-ipc serve")
	via := fs.String("via", "channel", "unix or channel")
	size := fs.Int("size", 64, "message size")
	iters := fs.Int("iters", 20000, "round trips")
	fs.Parse(args)
	if local {
		a, b, err := colo.LocalChannelPair(8 << 20)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go echoChannel(b)
		pin(0)
		report(pingChannel(a, *size, *iters))
		return
	}
	pin(0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := colo.Open(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conn, err := client.Dial(ctx, *to)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *via == "channel" {
		ch, err := client.OpenChannel(ctx, conn, 8<<20)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := ch.Send(ctx, []byte{'E'}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		report(pingChannel(ch, *size, *iters))
		return
	}
	ctl := make([]byte, 5)
	ctl[0] = 'E'
	binary.LittleEndian.PutUint32(ctl[1:], uint32(*size))
	conn.Write(ctl)
	report(pingStream(conn, *size, *iters))
}
