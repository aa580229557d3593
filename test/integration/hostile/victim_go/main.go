// The Go client as side 1: accept the offered channel on $COLO_PAIR_FD, then N times read and send.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	colo "colo.dev/colo"
)

func main() {
	fd, _ := strconv.Atoi(os.Getenv("COLO_PAIR_FD"))
	c, err := net.FileConn(os.NewFile(uintptr(fd), "pair"))
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ch, err := colo.AcceptChannel(ctx, c)
	cancel()
	if err != nil {
		fmt.Println("go accept err:", err)
		fmt.Println("go alive")
		return
	}
	n := 3
	if s := os.Getenv("N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if msg, err := ch.Read(ctx); err != nil {
			fmt.Println("go read err:", err)
		} else {
			fmt.Println("go read ok", len(msg))
			ch.Release()
		}
		if err := ch.Send(ctx, make([]byte, 64)); err != nil {
			fmt.Println("go send err:", err)
		} else {
			fmt.Println("go send ok")
		}
		cancel()
	}
	fmt.Println("go alive")
}
