package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/ipmisim"
)

// TestDrillViaIPMI: `strata drill meta-failover --via-ipmi` powers the
// leader's (simulated) machine off through its BMC, under load, and on
// again; the report has a new leader, no failed or corrupt operation and
// the relaunch (rejoin) time.
func TestDrillViaIPMI(t *testing.T) {
	if !ipmisim.Available() {
		t.Skip("ipmi_sim not installed (scripts/install-deps.sh)")
	}
	nodes := startMetaNodes(t, 18720)[:3]
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.grpc)
	}
	meta := strings.Join(addrs, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, n := range nodes {
		if _, err := (bootctl.IPMI{}).Do(ctx, n.node("").BMC, bootctl.ActionOn, true); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for i := 0; i < 6; i++ {
		args := []string{"data", "--dir", filepath.Join(dir, fmt.Sprint(i)), "--listen", fmt.Sprintf("127.0.0.1:%d", 18740+i), "--meta", meta, "--log-level", "error"}
		dctx, dcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); run(dctx, args, &bytes.Buffer{}, &bytes.Buffer{}) }()
		t.Cleanup(func() { dcancel(); <-done })
	}
	c, err := client.New(client.Config{MetaAddrs: addrs, TLS: testClientTLS(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := keyedStore(t, c)
	if err := st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := st.AddNode(ctx, n.node(bootctl.RoleMetadata)); err != nil {
			t.Fatal(err)
		}
	}
	waitDataservers(t, c, 6)
	code, out, errOut := cliRun("drill", "meta-failover", "--via-ipmi", "--rounds", "1", "--json", "--settle", "1s", "--meta", meta, "--service-ip", "")
	var rep struct{ Rounds []roundReport }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || len(rep.Rounds) != 1 {
		t.Fatalf("drill exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	r := rep.Rounds[0]
	if r.NewLeader == "" || r.NewLeader == r.OldLeader || r.Failed != 0 || r.Corrupt != 0 || r.Verified == 0 || r.RejoinMs <= 0 {
		t.Errorf("round %+v", r)
	}
	t.Logf("%s", out)
}

func waitDataservers(t *testing.T, c *client.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.ClusterStatus(ctx)
		cancel()
		alive := 0
		if err == nil {
			for _, d := range st.Dataservers {
				if d.Alive {
					alive++
				}
			}
		}
		if alive >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("fewer than %d dataservers up after 30 s", n)
}
