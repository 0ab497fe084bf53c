package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/bootctl"
)

// TestPowerSavingAndWake: three booted nodes of a group on ipmi_sim BMCs.
// The power-saving sweep powers off the idle one, but neither the one
// with a job lease (busy file) nor the one whose mount is in use (its
// agent reports the mount's request counter); once the lease is gone and
// the mount quiet for the idle time, those two go off as well. `node wake`
// brings one back; `node acquire --group g --count 2` (a request for nodes
// of the now powered-off group) hands out the running one and powers on
// and waits for another; a request keeps power saving away from the nodes
// it handed out; asking for more nodes than the group has is refused.
func TestPowerSavingAndWake(t *testing.T) {
	r := newBootRig(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	r.addNode("active", "02:00:00:00:02:03", "g", "--whole-fs-mount")
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
	// A program uses the active node's mount: a lookup every 200 ms.
	actx, stopActivity := context.WithCancel(ctx)
	activityDone := make(chan struct{})
	go func() {
		defer close(activityDone)
		for i := 0; actx.Err() == nil; i++ {
			os.Stat(filepath.Join(r.mnts["active"], fmt.Sprintf("probe-%d", i)))
			time.Sleep(200 * time.Millisecond)
		}
	}()
	defer func() { stopActivity(); <-activityDone }()

	// The idle node's last activity is its boot; the others' (heartbeat
	// every second, mount counters written every second) stay within two
	// seconds of now.
	const idleAfter = 6 * time.Second
	sweep := bootctl.IdlePolicy{IdleAfter: idleAfter, Store: r.st, Power: bootctl.IPMI{}, Log: slog.New(slog.DiscardHandler)}
	// The idle node's mount served its boot (the agent's look at it): wait
	// until its check-in says so, and sweep well after that.
	ci, err := bootctl.WaitCheckIn(ctx, r.st, "idle", 30*time.Second, 100*time.Millisecond, func(ci bootctl.CheckIn) bool { return ci.MountRequests > 0 })
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(ci.MountActiveAt.Add(idleAfter + 500*time.Millisecond)))
	off, err := sweep.Sweep(ctx)
	if err != nil || len(off) != 1 || off[0] != "idle" {
		for name := range r.bmcs {
			ci, _ := r.st.GetCheckIn(ctx, name)
			t.Logf("%s: %+v", name, ci)
		}
		t.Fatalf("sweep powered off %v (%v); want [idle]", off, err)
	}
	waitFor(t, "idle node off", 20*time.Second, func() bool { return r.bmcs["idle"].NodePID() == 0 })
	for _, name := range []string{"busy", "active"} {
		if r.bmcs[name].NodePID() == 0 {
			t.Errorf("%s node powered off", name)
		}
	}
	if ci, _ := r.st.GetCheckIn(ctx, "active"); ci.MountRequests == 0 || time.Since(ci.MountActiveAt) > 3*time.Second {
		t.Errorf("active node's check-in: %d mount requests, mount active at %v", ci.MountRequests, ci.MountActiveAt)
	}
	out = mustCLIRun(t, "node", "power", "status", "--all", "--meta", r.meta)
	if !strings.Contains(out, "idle") || !strings.Contains(out, " off ") {
		t.Errorf("status after the sweep:\n%s", out)
	}

	// The job lease ends and the mount goes quiet: both go off, but only
	// once they have been idle for about IdleAfter.
	stopActivity()
	<-activityDone
	if err := os.Remove(busy); err != nil {
		t.Fatal(err)
	}
	quietAt := time.Now()
	offAt := map[string]time.Duration{}
	waitFor(t, "busy and active nodes off", 60*time.Second, func() bool {
		got, err := sweep.Sweep(ctx)
		if err != nil {
			t.Logf("sweep: %v", err)
		}
		for _, n := range got {
			offAt[n] = time.Since(quietAt)
		}
		time.Sleep(300 * time.Millisecond)
		return len(offAt) == 2
	})
	for name, d := range offAt {
		if d < idleAfter-2500*time.Millisecond {
			t.Errorf("%s powered off %v after it went quiet; want about %v", name, d, idleAfter)
		}
	}
	t.Logf("powered off once quiet: %v", offAt)
	waitFor(t, "busy and active nodes off", 20*time.Second, func() bool {
		return r.bmcs["busy"].NodePID() == 0 && r.bmcs["active"].NodePID() == 0
	})

	out = mustCLIRun(t, "node", "wake", "idle", "--meta", r.meta)
	t.Logf("%s", out)
	if !strings.Contains(out, "checked in") || r.bmcs["idle"].NodePID() == 0 || !bootctl.IsMounted(r.mnts["idle"]) {
		t.Errorf("wake: %s (node pid %d)", out, r.bmcs["idle"].NodePID())
	}

	// A request for 2 nodes of the group: idle is up, one more is powered
	// on and waited for.
	start := time.Now()
	out = mustCLIRun(t, "node", "acquire", "--group", "g", "--count", "2", "--names", "--meta", r.meta)
	t.Logf("acquire 2 in %v: %q", time.Since(start).Round(time.Millisecond), out)
	if got := strings.Fields(out); len(got) != 2 || got[0] != "idle" || got[1] != "active" {
		t.Fatalf("acquire handed out %q; want idle (up) and active (first powered-off node)", got)
	}
	for _, name := range []string{"idle", "active"} {
		ci, err := r.st.GetCheckIn(ctx, name)
		if err != nil || ci.BootTime.Before(start.Add(-time.Minute)) || r.bmcs[name].NodePID() == 0 || !bootctl.IsMounted(r.mnts[name]) {
			t.Errorf("%s after acquire: check-in %+v %v, pid %d", name, ci, err, r.bmcs[name].NodePID())
		}
	}
	if r.bmcs["busy"].NodePID() != 0 {
		t.Error("acquire powered on more nodes than asked for")
	}
	if code, _, errOut := cliRun("node", "acquire", "--group", "g", "--count", "4", "--meta", r.meta); code != 1 || !strings.Contains(errOut, "has 3 compute nodes, 4 asked for") {
		t.Errorf("acquire of too many: exit %d %s", code, errOut)
	}
	// A request protects what it handed out from power saving: past a
	// short idle time, the node asked for again stays on, the other goes.
	short := bootctl.IdlePolicy{IdleAfter: 2 * time.Second, Store: r.st, Power: bootctl.IPMI{}, Log: slog.New(slog.DiscardHandler)}
	for _, name := range []string{"idle", "active"} { // both idle past short.IdleAfter
		ci, err = bootctl.WaitCheckIn(ctx, r.st, name, 30*time.Second, 100*time.Millisecond, func(ci bootctl.CheckIn) bool { return ci.MountRequests > 0 })
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(ci.MountActiveAt.Add(short.IdleAfter + time.Second)))
	}
	out = mustCLIRun(t, "node", "acquire", "--group", "g", "--count", "1", "--json", "--meta", r.meta)
	if !strings.Contains(out, `"node":"active","state":"up"`) {
		t.Errorf("acquire 1: %s", out)
	}
	if off, err := short.Sweep(ctx); err != nil || len(off) != 1 || off[0] != "idle" {
		t.Errorf("sweep after a request powered off %v (%v); want [idle] (active was just asked for)", off, err)
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
