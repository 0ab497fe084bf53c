package netns_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/netns"
)

// TestNetwork checks the harness itself with the test binary as a tiny
// server and client: hosts reach each other, and every fault (partition,
// pause, kill) has the effect it claims, while the machine's own network
// namespace stays untouched.
func TestNetwork(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("skipping multi-host test: %v", err)
	}
	before := rootLinks(t)
	n := netns.New(t, "10.77.0.0/24")
	a, b := n.AddHost("a"), n.AddHost("b")
	if got := rootLinks(t); !slices.Equal(got, before) {
		t.Fatalf("the root namespace's links changed: %v, was %v", got, before)
	}
	if a.IP.String() != "10.77.0.1" || b.IP.String() != "10.77.0.2" {
		t.Fatalf("addresses %s, %s; want 10.77.0.1, 10.77.0.2", a.IP, b.IP)
	}
	if out, err := exec.Command("ip", "-n", a.NS, "-o", "link", "show", "lo").CombinedOutput(); err != nil || !strings.Contains(string(out), "UP") {
		t.Fatalf("lo in %s is not up: %v %s", a.NS, err, out)
	}

	srv := a.Start(os.Args[0], helperArg, "listen", a.Addr(9000))
	// ip netns exec execs the program (once it has entered the
	// namespace): the pid signalled is the server's own.
	self, _ := os.Executable()
	exe := ""
	for deadline := time.Now().Add(5 * time.Second); exe != self && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", srv.Pid()))
	}
	if exe != self {
		t.Fatalf("pid %d runs %q, want %s", srv.Pid(), exe, self)
	}
	waitReach(t, b, a.Addr(9000), true)

	n.Partition(a)
	waitReach(t, b, a.Addr(9000), false)
	n.Heal(a)
	waitReach(t, b, a.Addr(9000), true)

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	waitReach(t, b, a.Addr(9000), false)
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitReach(t, b, a.Addr(9000), true)

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Wait after Kill: %v, want killed", err)
	}
	waitReach(t, b, a.Addr(9000), false)
}

// waitReach waits (up to 10 s) until a dial from host from to addr gets
// the greeting (reachable) or fails (not reachable).
func waitReach(t *testing.T, from *netns.Host, addr string, reachable bool) {
	t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err = from.Exec(ctx, os.Args[0], helperArg, "dial", addr)
		cancel()
		if ok := err == nil && strings.HasPrefix(string(out), "hello"); ok == reachable {
			return
		}
	}
	t.Fatalf("%s -> %s: reachable should be %v; last try: %v %s", from.Name, addr, reachable, err, out)
}

// rootLinks lists the interface names of the test's own namespace.
func rootLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("ip link: %v", err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, f[1])
		}
	}
	return names
}
