package netns_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/netns"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// Ports of the servers; every host has its own address, so each server
// uses the standard port.
const (
	grpcPort = 7400
	raftPort = 7410
	dataPort = 7420
)

// cluster is three metaservers, one dataserver and a client host, each a
// host of its own, running the real strata binary.
type cluster struct {
	t      *testing.T
	net    *netns.Net
	bin    string
	dir    string
	metas  []*netns.Host
	procs  map[string]*netns.Proc // running metaserver by id (host name)
	data   *netns.Proc
	client *netns.Host
	// meta is the --meta flag of the dataserver and the client.
	meta string
	// metaFlags are extra flags of every metaserver.
	metaFlags []string
	// tls is the TLS directory (a CA made for this cluster, a
	// certificate per role) every process gets with --tls-dir.
	tls string
}

func newCluster(t *testing.T, metaFlags ...string) *cluster {
	n := netns.New(t, "10.77.0.0/24")
	c := &cluster{t: t, net: n, bin: netns.StrataBinary(t), dir: t.TempDir(), procs: map[string]*netns.Proc{}, metaFlags: metaFlags}
	c.tls = filepath.Join(c.dir, "tls")
	if err := testcluster.MakeTLSDir(filepath.Join(c.dir, "ca"), c.tls); err != nil {
		t.Fatal(err)
	}
	var peers, addrs []string
	for i := 1; i <= 3; i++ {
		h := n.AddHost(fmt.Sprintf("m%d", i))
		c.metas = append(c.metas, h)
		peers = append(peers, h.Name+"="+h.Addr(raftPort))
		addrs = append(addrs, h.Addr(grpcPort))
	}
	c.meta = strings.Join(addrs, ",")
	for _, h := range c.metas {
		c.startMeta(h, strings.Join(peers, ","))
	}
	d := n.AddHost("d1")
	c.data = d.Start(c.bin, "data", "--tls-dir", c.tls, "--dir", filepath.Join(c.dir, "d1"), "--listen", d.Addr(dataPort),
		"--meta", c.meta, "--fsync=false", "--heartbeat", "200ms", "--reserve", "1048576")
	c.client = n.AddHost("client")
	return c
}

// startMeta starts (or restarts, on the same directory) the metaserver of
// host h. Short raft timings keep failovers within a second or two.
func (c *cluster) startMeta(h *netns.Host, peers string) {
	args := []string{"meta", "--tls-dir", c.tls, "--id", h.Name, "--dir", filepath.Join(c.dir, h.Name),
		"--raft-addr", h.Addr(raftPort), "--grpc-addr", h.Addr(grpcPort), "--peers", peers,
		"--heartbeat-timeout", "300ms", "--election-timeout", "300ms", "--leader-lease", "150ms",
		"--dataserver-grace", "2s"}
	c.procs[h.Name] = h.Start(c.bin, append(args, c.metaFlags...)...)
}

func (c *cluster) host(id string) *netns.Host {
	for _, h := range c.metas {
		if h.Name == id {
			return h
		}
	}
	c.t.Fatalf("no metaserver %q", id)
	return nil
}

// strata runs the CLI on the client host.
func (c *cluster) strata(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args = append([]string{args[0], "--tls-dir", c.tls}, args[1:]...)
	out, err := c.client.Exec(ctx, c.bin, args...)
	return string(out), err
}

var (
	leaderRE = regexp.MustCompile(`(?m)^leader:\s+(m\d+) \(`)
	upRE     = regexp.MustCompile(`(?m)^(\d+) of (\d+) dataservers up$`)
)

// status is what `strata status` on the client host says.
type status struct {
	leader string // "" when none
	dataUp string // "1 of 1"
}

// waitStatus polls `strata status` from the client host until ok accepts
// it, and returns it.
func (c *cluster) waitStatus(what string, timeout time.Duration, ok func(status) bool) status {
	c.t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		// More than the client's 5 s per attempt: a new CLI process first
		// tries the first --meta address, and a partitioned one costs that.
		out, err = c.strata(15*time.Second, "status", "--meta", c.meta)
		if err != nil {
			continue
		}
		var st status
		if m := leaderRE.FindStringSubmatch(out); m != nil {
			st.leader = m[1]
		}
		if m := upRE.FindStringSubmatch(out); m != nil {
			st.dataUp = m[1] + " of " + m[2]
		}
		if ok(st) {
			return st
		}
	}
	c.t.Fatalf("waiting %v for %s; last status: %v\n%s", timeout, what, err, out)
	return status{}
}

// put writes size random bytes to path, one data shard and no parity:
// the only stripe a single dataserver can hold.
func (c *cluster) put(path string, size int) []byte {
	c.t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	local := filepath.Join(c.dir, "put-"+filepath.Base(path))
	if err := os.WriteFile(local, data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	if out, err := c.strata(20*time.Second, "put", "--meta", c.meta, "-k", "1", "-m", "0", local, path); err != nil {
		c.t.Fatalf("put %s: %v\n%s", path, err, out)
	}
	return data
}

// get reads path back and compares it with want.
func (c *cluster) get(path string, want []byte) {
	c.t.Helper()
	local := filepath.Join(c.dir, "get-"+filepath.Base(path))
	if out, err := c.strata(20*time.Second, "get", "--meta", c.meta, path, local); err != nil {
		c.t.Fatalf("get %s: %v\n%s", path, err, out)
	}
	got, err := os.ReadFile(local)
	if err != nil {
		c.t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("get %s: %d bytes differ from the %d put", path, len(got), len(want))
	}
}

// TestMetaFailover runs a cluster of real processes, one per host, with
// raft and gRPC over veth links: a file written before the leader's
// process is SIGKILLed reads back byte for byte from the new leader; the
// killed server restarts from its directory; a leader cut off by a
// partition is replaced, and rejoins once healed; a paused dataserver is
// seen as down and comes back when resumed.
func TestMetaFailover(t *testing.T) {
	start := time.Now()
	c := newCluster(t)
	oneUp := func(st status) bool { return st.leader != "" && st.dataUp == "1 of 1" }
	st := c.waitStatus("a leader and the dataserver", 30*time.Second, oneUp)
	t.Logf("%v: leader %s, dataservers %s", time.Since(start).Round(time.Millisecond), st.leader, st.dataUp)

	// Above the small-file threshold (128 KiB), so the chunk is stored as
	// asked (1+0) rather than as three replicas, which one server cannot hold.
	f1 := c.put("/before-kill", 1<<20+12345)

	old := st.leader
	if err := c.procs[old].Kill(); err != nil {
		t.Fatal(err)
	}
	st = c.waitStatus("a new leader after SIGKILL of "+old, 20*time.Second, func(st status) bool {
		return st.leader != "" && st.leader != old
	})
	t.Logf("%v: killed %s, new leader %s", time.Since(start).Round(time.Millisecond), old, st.leader)
	c.get("/before-kill", f1)

	// Back to three voters, so that a partitioned one can be spared. The
	// directory holds raft state, so no --peers: it rejoins as it was.
	c.startMeta(c.host(old), "")
	f2 := c.put("/after-kill", 300<<10)

	cut := st.leader
	c.net.Partition(c.host(cut))
	st = c.waitStatus("a new leader with "+cut+" partitioned", 20*time.Second, func(st status) bool {
		return st.leader != "" && st.leader != cut
	})
	t.Logf("%v: partitioned %s, new leader %s", time.Since(start).Round(time.Millisecond), cut, st.leader)
	f3 := c.put("/during-partition", 200<<10)
	c.net.Heal(c.host(cut))
	c.get("/before-kill", f1)
	c.get("/after-kill", f2)
	c.get("/during-partition", f3)

	// Now the healed server alone is asked (the status call is
	// answered by the leader, reached through it).
	if out, err := c.strata(10*time.Second, "status", "--meta", c.host(cut).Addr(grpcPort)); err != nil || !leaderRE.MatchString(out) {
		t.Fatalf("status through healed %s: %v\n%s", cut, err, out)
	}

	if err := c.data.Pause(); err != nil {
		t.Fatal(err)
	}
	c.waitStatus("the paused dataserver down", 15*time.Second, func(st status) bool { return st.dataUp == "0 of 1" })
	if err := c.data.Resume(); err != nil {
		t.Fatal(err)
	}
	c.waitStatus("the resumed dataserver up", 15*time.Second, oneUp)
	c.get("/before-kill", f1)
	t.Logf("%v: done", time.Since(start).Round(time.Millisecond))
}
