package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/ipmisim"
)

// metaNode is a simulated machine whose power-on starts `strata meta`.
type metaNode struct {
	name, id, raft, grpc string
	bmc                  *ipmisim.BMC
}

// startMetaNodes starts BMCs for 3 voters and 1 spare (ports from base:
// fixed, outside the test harness's and the kernel's ephemeral ranges).
func startMetaNodes(t testing.TB, base int) []*metaNode {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	useTestBMCKey(t)
	dir := t.TempDir()
	var nodes []*metaNode
	var peers []string
	for i := 0; i < 4; i++ {
		n := &metaNode{name: fmt.Sprintf("meta%d", i), id: fmt.Sprintf("m%d", i),
			raft: fmt.Sprintf("127.0.0.1:%d", base+2*i), grpc: fmt.Sprintf("127.0.0.1:%d", base+2*i+1)}
		if i < 3 {
			peers = append(peers, n.id+"="+n.raft)
		}
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		argv := []string{self, "meta", "--id", n.id, "--dir", filepath.Join(dir, n.id), "--raft-addr", n.raft, "--grpc-addr", n.grpc, "--log-level", "warn"}
		if i < 3 {
			argv = append(argv, "--peers", strings.Join(peers, ","))
		}
		n.bmc = ipmisim.Start(t, ipmisim.Options{Node: argv, Env: []string{asStrata, "STRATA_TLS_DIR=" + testTLSDir}, Password: "pw-" + n.name})
	}
	return nodes
}

func (n *metaNode) node(role bootctl.Role) bootctl.Node {
	return bootctl.Node{Name: n.name, MACs: []string{fmt.Sprintf("02:00:00:00:01:%02x", n.id[1])}, Role: role,
		BMC: bootctl.BMC{Addr: n.bmc.Addr(), User: n.bmc.User, Password: n.bmc.Password}, MetaID: n.id, MetaRaft: n.raft, MetaGRPC: n.grpc}
}

// metaWorkload creates files with an xattr until stopped, counting errors; it
// remembers what it created for the final check.
type metaWorkload struct {
	c       *client.Client
	errs    atomic.Int64
	lastErr atomic.Value
	mu      sync.Mutex
	made    []string
}

func (w *metaWorkload) run(ctx context.Context, id int) {
	for i := 0; ctx.Err() == nil; i++ {
		p := fmt.Sprintf("/work/w%d-%d", id, i)
		octx, cancel := context.WithTimeout(ctx, 60*time.Second)
		attr, err := w.c.Put(octx, p, strings.NewReader(""), client.PutOptions{})
		if err == nil {
			err = w.c.SetXattr(octx, attr.GetIno(), "user.v", []byte(p), 0)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.errs.Add(1)
			w.lastErr.Store(err)
			continue
		}
		w.mu.Lock()
		w.made = append(w.made, p)
		w.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEvent waits for a watchdog event of kind about member.
func waitEvent(t testing.TB, st *bootctl.Store, kind, member string, after uint64, d time.Duration) bootctl.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		evs, _ := st.Events(ctx)
		cancel()
		for _, e := range evs {
			if e.Seq > after && e.Kind == kind && e.Member == member {
				return e
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, _ := st.Events(ctx)
	t.Fatalf("no %s event for %s within %v; events: %+v", kind, member, d, evs)
	return bootctl.Event{}
}

func lastSeq(st *bootctl.Store) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evs, _ := st.Events(ctx)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// TestMetaWatchdogOnSimulatedBMCs: 3 metaservers and a spare, each started
// by its ipmi_sim BMC's power-on. The leader's BMC is powered off; the
// watchdog (in a real `strata bootctl` daemon, with a standby) power-cycles
// it and it rejoins. Then a voter hangs (SIGSTOP) and will not come back:
// the spare is powered on, added as a voter and caught up, the dead voter
// removed. A client workload sees no error throughout and every file it
// made is there at the end.
func TestMetaWatchdogOnSimulatedBMCs(t *testing.T) {
	if !ipmisim.Available() {
		t.Skip("ipmi_sim not installed (scripts/install-deps.sh)")
	}
	nodes := startMetaNodes(t, 18700)
	all := []string{}
	for _, n := range nodes {
		all = append(all, n.grpc)
	}
	meta := strings.Join(all, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ipmi := bootctl.IPMI{}
	for _, n := range nodes[:3] {
		if _, err := ipmi.Do(ctx, n.node("").BMC, bootctl.ActionOn, true); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(client.Config{MetaAddrs: all, TLS: testClientTLS(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := keyedStore(t, c)
	if err := st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		role := bootctl.RoleMetadata
		if i == 3 {
			role = bootctl.RoleSpare
		}
		if err := st.AddNode(ctx, n.node(role)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.MkdirAll(ctx, "/work", 0o755); err != nil {
		t.Fatal(err)
	}
	// Two controllers: one active, one standby (the lease decides).
	for i := 0; i < 2; i++ {
		startBootctl(t, meta, fmt.Sprintf("ctl%d", i))
	}
	w := &metaWorkload{c: c}
	wctx, wstop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(wctx, i) }()
	}
	defer func() { wstop(); wg.Wait() }()

	// 1. The leader's machine loses power.
	leader := leaderNode(t, c, nodes)
	seq := lastSeq(st)
	offAt := time.Now()
	if _, err := ipmi.Do(ctx, leader.node("").BMC, bootctl.ActionOff, false); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, st, "power-cycle", leader.id, seq, 30*time.Second)
	t.Logf("leader %s powered off; watchdog power-cycled it %v later (%s)", leader.id, e.At.Sub(offAt).Round(time.Millisecond), e.Detail)
	e = waitEvent(t, st, "rejoined", leader.id, seq, 60*time.Second)
	t.Logf("%s rejoined: %s", leader.id, e.Detail)

	// 2. A voter hangs, and its machine will not boot again.
	victim := leaderNode(t, c, nodes)
	seq = lastSeq(st)
	if err := victim.bmc.SetNode([]string{"false"}, nil); err != nil {
		t.Fatal(err)
	}
	victim.bmc.KillNode(syscall.SIGSTOP)
	t.Logf("%s hung (SIGSTOP) and will not come back", victim.id)
	waitEvent(t, st, "power-cycle", victim.id, seq, 30*time.Second)
	e = waitEvent(t, st, "replaced", "m3", seq, 90*time.Second)
	t.Logf("replacement: %s", e.Detail)
	cs, err := c.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var voters []string
	for _, m := range cs.Members {
		if m.Voter {
			voters = append(voters, m.Id)
		}
	}
	if len(voters) != 3 || strings.Contains(strings.Join(voters, ","), victim.id) || !strings.Contains(strings.Join(voters, ","), "m3") {
		t.Errorf("voters after the replacement: %v; want 3 with m3 and without %s", voters, victim.id)
	}
	if n, _ := st.GetNode(ctx, "meta3"); n.Role != bootctl.RoleMetadata {
		t.Errorf("spare's role after the replacement: %s", n.Role)
	}
	out := mustCLIRun(t, "bootctl", "status", "--meta", meta, "--events", "30")
	t.Logf("\n%s", out)
	for _, want := range []string{"voter-dead", "power-cycle", "rejoined", "spare-on", "voter-added", "voter-removed", "caught-up", "replaced"} {
		if !strings.Contains(out, want) {
			t.Errorf("bootctl status lacks %s", want)
		}
	}

	if out := mustCLIRun(t, "status", "--meta", meta); !strings.Contains(out, "replaced") || !strings.Contains(out, "boot controller: active") {
		t.Errorf("strata status lacks the boot controller's steps:\n%s", out)
	}
	time.Sleep(time.Second) // a little more workload on the new voter set
	wstop()
	wg.Wait()
	if n := w.errs.Load(); n > 0 {
		t.Errorf("workload saw %d errors (last: %v)", n, w.lastErr.Load())
	}
	w.mu.Lock()
	made := w.made
	w.mu.Unlock()
	if len(made) < 20 {
		t.Errorf("workload made only %d files", len(made))
	}
	for _, p := range made {
		attr, err := c.Stat(ctx, p)
		var v []byte
		if err == nil {
			v, err = c.GetXattr(ctx, attr.GetIno(), "user.v")
		}
		if err != nil || string(v) != p {
			t.Errorf("%s after the failovers: %q %v", p, v, err)
		}
	}
	t.Logf("%d files made and verified", len(made))
}

// startBootctl runs a `strata bootctl` daemon in-process until the test
// ends.
func startBootctl(t testing.TB, meta, id string, extra ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var out, errb strings.Builder
	go func() {
		defer close(done)
		args := []string{"bootctl", "--meta", meta, "--listen", "127.0.0.1:0", "--id", id, "--lease-ttl", "6s",
			"--probe-every", "300ms", "--probe-timeout", "300ms", "--fail-after", "2", "--rejoin-timeout", "10s", "--log-level", "info"}
		run(ctx, append(args, extra...), &out, &errb) // later flags win
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("bootctl %s stderr:\n%s", id, errb.String())
		}
	})
}

// leaderNode returns the node whose metaserver leads now.
func leaderNode(t *testing.T, c *client.Client, nodes []*metaNode) *metaNode {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cs, err := c.ClusterStatus(ctx)
		cancel()
		if err == nil {
			for _, n := range nodes {
				if n.id == cs.LeaderId {
					return n
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no metadata leader within 30 s")
	return nil
}
