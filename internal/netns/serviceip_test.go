package netns_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/netns"
)

const serviceIP = "10.77.0.100"

var macRE = regexp.MustCompile(`link/ether ([0-9a-f:]{17})`)

// run runs a command in host h and returns its output.
func run(t *testing.T, h *netns.Host, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, name, args...)
	if err != nil {
		t.Fatalf("%s %v in %s: %v\n%s", name, args, h.Name, err, out)
	}
	return string(out)
}

func holdsIP(t *testing.T, h *netns.Host) bool {
	return strings.Contains(run(t, h, "ip", "-4", "-o", "addr", "show", "dev", "eth0"), " "+serviceIP+"/")
}

func mac(t *testing.T, h *netns.Host) string {
	m := macRE.FindStringSubmatch(run(t, h, "ip", "-o", "link", "show", "dev", "eth0"))
	if m == nil {
		t.Fatalf("no MAC on %s", h.Name)
	}
	return m[1]
}

// neighMAC is the MAC the client's ARP cache has for the service IP.
func neighMAC(t *testing.T, h *netns.Host) string {
	out := run(t, h, "ip", "neigh", "show", serviceIP)
	if f := strings.Fields(out); len(f) >= 5 && f[3] == "lladdr" {
		return f[4]
	}
	return ""
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
	}
}

// onlyHolder waits until exactly the given host holds the service IP.
func (c *cluster) onlyHolder(id string) {
	c.t.Helper()
	defer func() {
		if c.t.Failed() {
			for name, p := range c.procs {
				c.t.Logf("--- %s:\n%s", name, p.Tail(15))
			}
		}
	}()
	waitFor(c.t, id+" alone holding "+serviceIP, 10*time.Second, func() bool {
		for _, h := range c.metas {
			if c.procs[h.Name] == nil || c.procs[h.Name].Exited() {
				continue
			}
			if holdsIP(c.t, h) != (h.Name == id) {
				return false
			}
		}
		return true
	})
}

// TestServiceIP: the leader holds the dedicated IP on its eth0 and
// announces it by gratuitous ARP; a client that knows only that IP follows
// the leader across a kill, a partition and a hang (SIGSTOP); a partitioned
// old leader gives the IP up once its lease lapses, a hung one as soon as
// it runs again.
func TestServiceIP(t *testing.T) {
	c := newCluster(t, "--service-ip", serviceIP+"/24", "--service-iface", "eth0")
	c.meta = serviceIP + ":7400" // the client knows nothing else
	st := c.waitStatus("a leader on the service ip", 30*time.Second, func(st status) bool {
		return st.leader != "" && st.dataUp == "1 of 1"
	})
	c.onlyHolder(st.leader)
	f1 := c.put("/via-service-ip", 300<<10)
	if got, want := neighMAC(t, c.client), mac(t, c.host(st.leader)); got != want {
		t.Fatalf("client resolves %s to %s, leader's MAC is %s", serviceIP, got, want)
	}

	old := st.leader
	c.procs[old].Kill()
	// No client traffic now: the new leader's gratuitous ARP alone must
	// move the client's cache entry.
	var next string
	waitFor(t, "another metaserver to take "+serviceIP, 10*time.Second, func() bool {
		for _, h := range c.metas {
			if h.Name != old && holdsIP(t, h) {
				next = h.Name
				return true
			}
		}
		return false
	})
	waitFor(t, "the client's ARP entry to follow by gratuitous ARP", 3*time.Second, func() bool {
		return neighMAC(t, c.client) == mac(t, c.host(next))
	})
	c.get("/via-service-ip", f1)

	// A partitioned leader must drop the IP (its lease lapses, raft steps
	// it down) while the other side elects a leader that takes it.
	c.startMeta(c.host(old), "")
	c.net.Partition(c.host(next))
	waitFor(t, next+" (partitioned) to drop "+serviceIP, 10*time.Second, func() bool {
		return !holdsIP(t, c.host(next))
	})
	st = c.waitStatus("a leader other than "+next, 20*time.Second, func(st status) bool {
		return st.leader != "" && st.leader != next
	})
	c.onlyHolder(st.leader)
	f2 := c.put("/during-partition", 200<<10)
	c.net.Heal(c.host(next))
	c.get("/via-service-ip", f1)
	c.get("/during-partition", f2)

	// A hung leader (SIGSTOP): the others elect a leader that takes the
	// IP; once the hung one runs again it learns it lost, and drops it.
	hung := st.leader
	c.procs[hung].Pause()
	st = c.waitStatus("a leader other than the hung "+hung, 20*time.Second, func(st status) bool {
		return st.leader != "" && st.leader != hung
	})
	f3 := c.put("/while-hung", 100<<10)
	c.procs[hung].Resume()
	c.onlyHolder(st.leader)
	c.get("/via-service-ip", f1)
	c.get("/during-partition", f2)
	c.get("/while-hung", f3)
}
