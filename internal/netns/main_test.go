package netns_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/netns"
)

// helperArg as os.Args[1] makes the test binary a tiny network program
// instead of running tests: the harness test starts it inside hosts.
const helperArg = "netns-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == helperArg && os.Args[2] == "meta-workload" {
		os.Exit(metaWorkload(os.Args[3:])) // watchdog_test.go
	}
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		os.Exit(helper(os.Args[2:]))
	}
	code := m.Run()
	netns.RemoveBuilds()
	os.Exit(code)
}

// helper runs "listen ADDR" (greet every connection, forever) or
// "dial ADDR" (print the greeting, fail after 1 s without one).
func helper(args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: netns-helper listen|dial ADDR")
		return 2
	}
	var err error
	switch args[0] {
	case "listen":
		err = listen(args[1])
	case "dial":
		err = dial(args[1])
	default:
		err = fmt.Errorf("unknown helper %q", args[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func listen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		fmt.Fprintf(c, "hello from %s\n", addr)
		c.Close()
	}
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}
