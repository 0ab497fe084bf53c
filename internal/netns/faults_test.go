package netns_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/linearize"
)

// historyReport is what `strata drill history` writes (cmd/strata).
type historyReport struct {
	Ops          []linearize.Op `json:"ops"`
	Failed       int            `json:"failed"`
	Errors       []string       `json:"errors"`
	BulkFiles    int            `json:"bulk_files"`
	BulkBytes    int64          `json:"bulk_bytes"`
	BulkVerified int64          `json:"bulk_bytes_verified"`
	StallMaxMs   float64        `json:"stall_max_ms"`
}

// TestFaultsUnderLoad: 3 voters in 3 namespaces, a dataserver, and a
// client in a 4th namespace that knows only the service IP, running a
// continuous workload (register reads and writes on a few files, bulk
// files read back byte for byte) as a real `strata` process while the
// leader is SIGKILLed, then hung (SIGSTOP), then cut off by a partition.
// Afterwards: no operation failed, every bulk byte reads back, the
// history of register operations is linearizable (no stale read, no lost
// write, no split brain), exactly one host (the leader) holds the service
// IP, and the client's ARP entry for it points at the leader's MAC. A
// fresh client whose first connection reaches the hung leader must not
// wait out gRPC's 20 s connect timeout.
func TestFaultsUnderLoad(t *testing.T) {
	start := time.Now()
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("%6.2fs: "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}
	c := newCluster(t, "--service-ip", serviceIP+"/24", "--service-iface", "eth0")
	c.meta = serviceIP + ":7400" // the clients know nothing else
	st := c.waitStatus("a leader on the service ip", 30*time.Second, func(st status) bool {
		return st.leader != "" && st.dataUp == "1 of 1"
	})
	c.onlyHolder(st.leader)
	logf("leader %s holds %s", st.leader, serviceIP)

	out := filepath.Join(t.TempDir(), "history.json")
	load := c.client.Start(c.bin, "drill", "history", "--tls-dir", c.tls, "--json", "--meta", c.meta, "--out", out,
		"--keys", "3", "--workers", "3", "--bulk-workers", "1", "--bulk-size", "300000", "--duration", "3m")
	waitFor(t, "the workload to start", 30*time.Second, func() bool {
		return strings.Contains(load.Output(), "workload running") || load.Exited()
	})
	if load.Exited() {
		t.Fatalf("the workload ended early: %s\n%s", load.Status(), load.Output())
	}
	steady := func() { time.Sleep(1500 * time.Millisecond) } // let the workload run against the new leader

	// (a) SIGKILL: another host takes the IP; the killed one, restarted,
	// clears its leftover copy of the IP.
	steady()
	old := c.holder()
	c.procs[old].Kill()
	next := c.waitNewHolder(old)
	logf("killed %s; %s holds the IP", old, next)
	c.startMeta(c.host(old), "")
	c.onlyHolder(next)

	// (b) SIGSTOP: a hung leader keeps its sockets and its address. A
	// fresh client sent there at once must get an answer within seconds,
	// from the new leader.
	steady()
	hung := c.holder()
	c.procs[hung].Pause()
	t0 := time.Now()
	if out, err := c.strata(15*time.Second, "status", "--meta", c.meta); err != nil || !leaderRE.MatchString(out) {
		t.Fatalf("a fresh client during the hang: %v\n%s", err, out)
	}
	if d := time.Since(t0); d > 8*time.Second {
		t.Fatalf("a fresh client took %v to get an answer while %s hung; want a few seconds, not gRPC's connect timeout", d, hung)
	}
	logf("paused %s; a fresh client got an answer in %v", hung, time.Since(t0).Round(time.Millisecond))
	next = c.waitNewHolder(hung)
	logf("%s holds the IP", next)
	steady()
	c.procs[hung].Resume()
	c.onlyHolder(next)

	// (c) partition: the cut-off leader drops the IP once its lease
	// lapses; the majority elects one that takes it.
	steady()
	cut := c.holder()
	c.net.Partition(c.host(cut))
	waitFor(t, cut+" (partitioned) to drop "+serviceIP, 15*time.Second, func() bool { return !holdsIP(t, c.host(cut)) })
	next = c.waitNewHolder(cut)
	logf("partitioned %s; %s holds the IP", cut, next)
	steady()
	c.net.Heal(c.host(cut))
	c.onlyHolder(next)
	steady()

	if err := load.Terminate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := load.Wait(ctx); err != nil {
		t.Fatalf("workload: %v\n%s", err, load.Tail(20))
	}
	rep := readHistory(t, out)
	logf("%d register ops, %d bulk files (%d bytes), longest operation %.0f ms", len(rep.Ops), rep.BulkFiles, rep.BulkBytes, rep.StallMaxMs)
	if rep.Failed != 0 {
		t.Errorf("%d operations failed: %v", rep.Failed, rep.Errors)
	}
	if rep.BulkFiles == 0 || rep.BulkVerified != rep.BulkBytes {
		t.Errorf("bulk: %d files, %d of %d bytes verified", rep.BulkFiles, rep.BulkVerified, rep.BulkBytes)
	}
	if len(rep.Ops) < 100 {
		t.Errorf("only %d register operations recorded", len(rep.Ops))
	}
	if err := linearize.Check(rep.Ops, time.Minute); err != nil {
		t.Errorf("%d register operations: %v", len(rep.Ops), err)
	}

	// Exactly one host holds the IP, and the client reaches it there.
	leader := c.holder()
	c.onlyHolder(leader)
	out2, err := c.strata(15*time.Second, "status", "--meta", c.meta)
	if m := leaderRE.FindStringSubmatch(out2); err != nil || m == nil || m[1] != leader {
		t.Fatalf("status through %s: %v, want leader %s\n%s", serviceIP, err, leader, out2)
	}
	if got, want := neighMAC(t, c.client), mac(t, c.host(leader)); got != want {
		t.Fatalf("the client resolves %s to %s; the leader %s has %s", serviceIP, got, leader, want)
	}
	logf("done: %s alone holds %s, the client's ARP entry points at it", leader, serviceIP)
}

// holder is the one running metaserver whose host holds the service IP.
func (c *cluster) holder() string {
	c.t.Helper()
	var id string
	waitFor(c.t, "one holder of "+serviceIP, 15*time.Second, func() bool {
		var holders []string
		for _, h := range c.metas {
			if p := c.procs[h.Name]; p != nil && !p.Exited() && holdsIP(c.t, h) {
				holders = append(holders, h.Name)
			}
		}
		if len(holders) == 1 {
			id = holders[0]
		}
		return len(holders) == 1
	})
	return id
}

// waitNewHolder waits until a host other than old holds the service IP.
func (c *cluster) waitNewHolder(old string) string {
	c.t.Helper()
	var next string
	waitFor(c.t, "a metaserver other than "+old+" to take "+serviceIP, 20*time.Second, func() bool {
		for _, h := range c.metas {
			if h.Name != old && holdsIP(c.t, h) {
				next = h.Name
				return true
			}
		}
		return false
	})
	return next
}

func readHistory(t *testing.T, path string) historyReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the workload's report: %v", err)
	}
	var rep historyReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("the workload's report %s: %v", path, err)
	}
	return rep
}
