package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDrillAgainstDev: `strata drill meta-failover` against a dev cluster
// (one command) kills the leader twice under load and reports no failed
// operation, every file verified, a new leader each time, and the old one
// back.
func TestDrillAgainstDev(t *testing.T) {
	// Above the kernel's ephemeral ports and the test harness's range
	// (20000-32700), so no other test process can hold one of them.
	const base = 61500
	o := devOptions{dir: t.TempDir(), basePort: base, metas: 3, datas: 6, vip: devServiceIP}
	t.Setenv("STRATA_TLS_DIR", devTLSDir(o.dir))
	dc := &devCluster{o: o, log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry()}
	t.Cleanup(dc.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := dc.start(ctx); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run(ctx, []string{"drill", "meta-failover", "--rounds", "2", "--json", "--settle", "1s",
		"--meta", strings.Join(dc.metaAddrs(), ","), "--service-ip", fmt.Sprintf("%s:%d", devServiceIP, base),
		"--dev-control", fmt.Sprintf("https://127.0.0.1:%d", base+30)}, &out, &errb)
	var rep struct{ Rounds []roundReport }
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("drill output is not JSON (exit %d): %v\n%s\n%s", code, err, out.String(), errb.String())
	}
	if code != 0 || len(rep.Rounds) != 2 {
		t.Fatalf("drill exit %d, %d rounds\n%s\n%s", code, len(rep.Rounds), out.String(), errb.String())
	}
	for _, r := range rep.Rounds {
		if r.NewLeader == "" || r.NewLeader == r.OldLeader || r.Failed != 0 || r.Corrupt != 0 || r.Verified == 0 || r.RejoinMs <= 0 || r.ServiceIPMs <= 0 {
			t.Errorf("round %+v", r)
		}
	}
	t.Logf("%s", out.String())
}
