package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/bootctl"
)

// TestPowerSavingAndWake: of two booted nodes, the idle one is powered off
// by the power-saving sweep and the busy one (job lease file) is not;
// `strata node wake` powers the idle one on again and returns once it has
// checked in. `node power` refuses an empty selection and wants --all for
// every node.
func TestPowerSavingAndWake(t *testing.T) {
	r := newBootRig(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := r.c.MkdirAll(ctx, "/images/alpha/1", 0o755); err != nil {
		t.Fatal(err)
	}
	mustCLIRun(t, "group", "create", "g", "--meta", r.meta, "--image", "alpha:1")
	busy := filepath.Join(r.dir, "job-lease")
	if err := os.WriteFile(busy, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The whole-FS mount (the agent checks the image directory in it): this
	// test is about power, and needs no dataserver that way.
	r.addNode("busy", "02:00:00:00:02:01", "g", "--busy-file", busy, "--whole-fs-mount")
	r.addNode("idle", "02:00:00:00:02:02", "g", "--whole-fs-mount")
	if code, _, errOut := cliRun("node", "power", "status", "--meta", r.meta); code != 2 || !strings.Contains(errOut, "--all") {
		t.Errorf("power with no selection: exit %d %s", code, errOut)
	}
	out := mustCLIRun(t, "node", "power", "on", "--pxe", "--all", "--meta", r.meta)
	t.Logf("\n%s", out)
	for name := range r.bmcs {
		if _, err := bootctl.WaitCheckIn(ctx, r.st, name, 60*time.Second, 100*time.Millisecond, func(ci bootctl.CheckIn) bool { return ci.Generation == 1 }); err != nil {
			t.Fatal(err)
		}
	}
	// The idle node's last activity is its boot; the busy one's heartbeat
	// (every second) keeps its own within about a second: wait until the
	// idle one is well past IdleAfter, with seconds of margin either side.
	const idleAfter = 4 * time.Second
	ci, err := r.st.GetCheckIn(ctx, "idle")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(ci.BootTime.Add(idleAfter + 500*time.Millisecond)))
	p := bootctl.IdlePolicy{IdleAfter: idleAfter, Store: r.st, Power: bootctl.IPMI{}, Log: slog.New(slog.DiscardHandler)}
	off, err := p.Sweep(ctx)
	if err != nil || len(off) != 1 || off[0] != "idle" {
		t.Fatalf("sweep powered off %v (%v); want [idle]", off, err)
	}
	waitFor(t, "idle node off", 20*time.Second, func() bool { return r.bmcs["idle"].NodePID() == 0 })
	if r.bmcs["busy"].NodePID() == 0 {
		t.Error("busy node powered off")
	}
	out = mustCLIRun(t, "node", "power", "status", "--all", "--meta", r.meta)
	if !strings.Contains(out, "idle") || !strings.Contains(out, " off ") {
		t.Errorf("status after the sweep:\n%s", out)
	}
	out = mustCLIRun(t, "node", "wake", "idle", "--meta", r.meta)
	t.Logf("%s", out)
	if !strings.Contains(out, "checked in") || r.bmcs["idle"].NodePID() == 0 || !bootctl.IsMounted(r.mnts["idle"]) {
		t.Errorf("wake: %s (node pid %d)", out, r.bmcs["idle"].NodePID())
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
