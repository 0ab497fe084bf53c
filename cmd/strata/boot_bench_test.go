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
	"testing"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/pki"
)

// BenchmarkGroupSwitch16: one `strata group switch` of 16 simulated nodes
// (power cycle, boot agent start, image mount, check-in), default
// concurrency. Run: go test ./cmd/strata -run '^$' -bench GroupSwitch16 -benchtime 1x
func BenchmarkGroupSwitch16(b *testing.B) {
	r := newBootRig(b, 6)
	for _, img := range []string{"alpha:1", "beta:2"} {
		src := filepath.Join(r.dir, "src-"+img)
		os.MkdirAll(filepath.Join(src, "etc"), 0o755)
		os.WriteFile(filepath.Join(src, "etc", "release"), []byte(img+"\n"), 0o644)
		mustCLIRun(b, "image", "import", "--meta", r.meta, img, src)
	}
	mustCLIRun(b, "group", "create", "g", "--meta", r.meta, "--image", "alpha:1")
	for i := 0; i < 16; i++ {
		r.addNode(fmt.Sprintf("n%02d", i), fmt.Sprintf("02:00:00:00:03:%02x", i), "g")
	}
	mustCLIRun(b, "node", "power", "on", "--pxe", "--group", "g", "--meta", r.meta)
	ctx := context.Background()
	for name := range r.bmcs {
		if _, err := bootctl.WaitCheckIn(ctx, r.st, name, 2*time.Minute, 100*time.Millisecond, func(ci bootctl.CheckIn) bool { return ci.Generation == 1 }); err != nil {
			b.Fatal(err)
		}
	}
	images := []string{"beta:2", "alpha:1"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		out := mustCLIRun(b, "group", "switch", "g", "--image", images[i%2], "--meta", r.meta, "--boot-timeout", "2m")
		b.ReportMetric(time.Since(start).Seconds(), "s/switch")
		if i == 0 {
			b.Logf("\n%s", out)
		}
	}
}

// BenchmarkIPMIOverhead: one IPMI session (open, one command, close)
// against ipmi_sim, per op: status, and set-boot-device PXE.
// Run: go test ./cmd/strata -run '^$' -bench IPMIOverhead
func BenchmarkIPMIOverhead(b *testing.B) {
	nodes := startMetaNodes(b, 18760)
	bmc := nodes[3].node("").BMC // the spare: never powered on here
	ctx := context.Background()
	for _, a := range []bootctl.Action{bootctl.ActionStatus, bootctl.ActionPXE} {
		b.Run(string(a), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := (bootctl.IPMI{}).Do(ctx, bmc, a, a == bootctl.ActionPXE); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSpareCatchUp100k: 3 voters and a spare on BMCs, 100,000 files
// in the namespace; a voter dies for good and the watchdog replaces it. It
// reports death to power-cycle, spare power-on to caught up, and the whole
// replacement. Run: go test ./cmd/strata -run '^$' -bench SpareCatchUp100k -benchtime 1x
func BenchmarkSpareCatchUp100k(b *testing.B) {
	for i := 0; i < b.N; i++ {
		spareCatchUp(b, 100000, 18780+20*i)
	}
}

func spareCatchUp(b *testing.B, files, base int) {
	nodes := startMetaNodes(b, base)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.grpc)
	}
	meta := strings.Join(addrs, ",")
	ctx := context.Background()
	for _, n := range nodes[:3] {
		if _, err := (bootctl.IPMI{}).Do(ctx, n.node("").BMC, bootctl.ActionOn, true); err != nil {
			b.Fatal(err)
		}
	}
	id, err := pki.Load(testTLSDir, pki.RoleClient, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := client.New(client.Config{MetaAddrs: addrs, TLS: id, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	st := keyedStore(b, c)
	if err := st.Init(ctx); err != nil {
		b.Fatal(err)
	}
	for i, n := range nodes {
		role := bootctl.RoleMetadata
		if i == 3 {
			role = bootctl.RoleSpare
		}
		if err := st.AddNode(ctx, n.node(role)); err != nil {
			b.Fatal(err)
		}
	}
	fill(b, c, files)
	startBootctl(b, meta, "ctl0")
	time.Sleep(3 * time.Second) // the lease and a first probe of every voter
	victim := nodes[0]
	victim.bmc.SetNode([]string{"false"}, nil)
	seq := lastSeq(st)
	b.ResetTimer()
	died := time.Now()
	if _, err := (bootctl.IPMI{}).Do(ctx, victim.node("").BMC, bootctl.ActionOff, false); err != nil {
		b.Fatal(err)
	}
	cycled := waitEvent(b, st, "power-cycle", victim.id, seq, time.Minute)
	// From here on a client creates files and the slowest create is kept:
	// the spare catching up must not stall the cluster's commits (it did
	// while it was added as a voter at once; see NOTES.md).
	wctx, wstop := context.WithCancel(ctx)
	slowest := make(chan time.Duration)
	go func() { slowest <- slowestCreate(wctx, c) }()
	on := waitEvent(b, st, "spare-on", "m3", seq, 2*time.Minute)
	caught := waitEvent(b, st, "caught-up", "m3", seq, 2*time.Minute)
	done := waitEvent(b, st, "replaced", "m3", seq, time.Minute)
	b.StopTimer()
	wstop()
	worst := <-slowest
	b.ReportMetric(cycled.At.Sub(died).Seconds(), "s-death-to-cycle")
	b.ReportMetric(caught.At.Sub(on.At).Seconds(), "s-spare-on-to-caught-up")
	b.ReportMetric(done.At.Sub(on.At).Seconds(), "s-spare-on-to-replaced")
	b.ReportMetric(worst.Seconds(), "s-slowest-create")
	b.Logf("%d files; replaced: %s; slowest client create during the replacement %v", files, done.Detail, worst.Round(time.Millisecond))
	evs, _ := st.Events(ctx)
	for _, e := range evs {
		if e.Seq > seq && e.Kind == "replace-failed" {
			b.Errorf("replacement restarted: %+v", e)
		}
	}
}

// slowestCreate creates files until ctx ends and returns the longest a
// create took.
func slowestCreate(ctx context.Context, c *client.Client) time.Duration {
	var worst time.Duration
	if err := c.MkdirAll(ctx, "/during", 0o755); err != nil {
		return -1
	}
	dir, err := c.Stat(ctx, "/during")
	if err != nil {
		return -1
	}
	for i := 0; ctx.Err() == nil; i++ {
		start := time.Now()
		if _, err := c.Create(ctx, dir.GetIno(), fmt.Sprintf("f%d", i), 0o644); err != nil && ctx.Err() == nil {
			return -1
		}
		if d := time.Since(start); d > worst && ctx.Err() == nil {
			worst = d
		}
		time.Sleep(10 * time.Millisecond)
	}
	return worst
}

// fill creates n empty files (metadata only), 64 at a time.
func fill(b *testing.B, c *client.Client, n int) {
	ctx := context.Background()
	start := time.Now()
	const dirs = 100
	for d := 0; d < dirs; d++ {
		if err := c.MkdirAll(ctx, fmt.Sprintf("/fill/%d", d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				dir, err := c.Stat(ctx, fmt.Sprintf("/fill/%d", i%dirs))
				if err == nil {
					_, err = c.Create(ctx, dir.GetIno(), fmt.Sprintf("f%d", i), 0o644)
				}
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		b.Fatalf("%d creates failed", failed.Load())
	}
	b.Logf("%d files created in %v", n, time.Since(start).Round(time.Millisecond))
}
