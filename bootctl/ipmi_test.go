package bootctl

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/ipmisim"
)

func bmcOf(b *ipmisim.BMC) BMC { return BMC{Addr: b.Addr(), User: b.User, Password: b.Password} }

// waitFor polls cond until it holds or the deadline passes.
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

// TestIPMIPowerAgainstIPMISim drives a real ipmi_sim BMC through on, PXE,
// cycle and off, and cross-checks every state with ipmitool.
func TestIPMIPowerAgainstIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := IPMI{}
	b := bmcOf(sim)
	ipmitoolPower := func() string {
		out, err := sim.Ipmitool(ctx, "chassis", "power", "status")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	if st, err := p.Do(ctx, b, ActionStatus, false); err != nil || st != PowerOff {
		t.Fatalf("status of a fresh BMC: %v, %v; want off", st, err)
	}
	if st, err := p.Do(ctx, b, ActionOn, true); err != nil || st != PowerOn {
		t.Fatalf("power on: %v, %v", st, err)
	}
	waitFor(t, "node process", 10*time.Second, func() bool { return sim.NodePID() > 0 })
	if got := ipmitoolPower(); got != "Chassis Power is on" {
		t.Fatalf("ipmitool after on: %q", got)
	}
	if sim.BootDevice() != "pxe" {
		t.Fatalf("boot device %q after power on with PXE; want pxe", sim.BootDevice())
	}
	out, err := sim.Ipmitool(ctx, "chassis", "bootparam", "get", "5")
	if err != nil || !strings.Contains(out, "PXE") {
		t.Fatalf("ipmitool boot device: %v\n%s", err, out)
	}
	first := sim.NodePID()
	if _, err := p.Do(ctx, b, ActionCycle, true); err != nil {
		t.Fatalf("cycle: %v", err)
	}
	waitFor(t, "a new node process after cycle", 15*time.Second, func() bool { pid := sim.NodePID(); return pid > 0 && pid != first })
	if _, err := p.Do(ctx, b, ActionOff, false); err != nil {
		t.Fatalf("off: %v", err)
	}
	waitFor(t, "node gone", 10*time.Second, func() bool { return sim.NodePID() == 0 })
	if got := ipmitoolPower(); got != "Chassis Power is off" {
		t.Fatalf("ipmitool after off: %q", got)
	}
	if st, err := p.Do(ctx, b, ActionStatus, false); err != nil || st != PowerOff {
		t.Fatalf("status after off: %v, %v", st, err)
	}
}

// TestIPMIBadBMCs: a wrong password, an unreachable BMC and a slow BMC give
// clear per-node results, and the good node in the same batch still works.
func TestIPMIBadBMCs(t *testing.T) {
	good := ipmisim.Start(t, ipmisim.Options{})
	slow := ipmisim.Start(t, ipmisim.Options{})
	if err := slow.SetDelay(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	wrong := bmcOf(good)
	wrong.Password = "not-the-password"
	nodes := []Node{
		{Name: "good", BMC: bmcOf(good)},
		{Name: "badpass", BMC: wrong},
		{Name: "gone", BMC: BMC{Addr: "127.0.0.1:9", User: "admin", Password: "password"}},
		{Name: "slow", BMC: bmcOf(slow)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Bounds generous enough for the good BMC on a loaded CI machine (its
	// chassis script is a bash process), below the slow one's delay.
	res := PowerAll(ctx, IPMI{RequestTimeout: time.Second, Retries: 1}, nodes, ActionStatus,
		PowerOptions{Timeout: 3 * time.Second, Retries: 1, RetryDelay: 100 * time.Millisecond}, nil)
	var sb strings.Builder
	PrintPowerResults(&sb, res)
	t.Logf("\n%s", sb.String())
	by := map[string]PowerResult{}
	for _, r := range res {
		by[r.Node] = r
	}
	if r := by["good"]; r.Err != nil || r.State != PowerOff {
		t.Errorf("good: %+v", r)
	}
	if r := by["badpass"]; !errors.Is(r.Err, ErrBMCAuth) || r.Attempts != 1 {
		t.Errorf("wrong password: want ErrBMCAuth at once (no retry), got %+v", r)
	}
	if r := by["gone"]; !errors.Is(r.Err, ErrBMCUnreachable) {
		t.Errorf("unreachable: want ErrBMCUnreachable, got %+v", r)
	}
	if r := by["slow"]; r.Err == nil || r.Took > 15*time.Second {
		t.Errorf("slow BMC: want a timeout within the per-node bound, got %+v", r)
	}
	for _, r := range res {
		if strings.Contains(r.Error, "password\"") || strings.Contains(r.Error, "not-the-password") {
			t.Errorf("result shows the password: %s", r.Error)
		}
	}
	// The slow BMC still works with a generous timeout.
	res = PowerAll(ctx, IPMI{RequestTimeout: 10 * time.Second, Retries: 1}, nodes[3:], ActionStatus, PowerOptions{Timeout: 30 * time.Second}, nil)
	if res[0].Err != nil {
		t.Errorf("slow BMC with a long timeout: %v", res[0].Err)
	}
}

// BenchmarkIPMISession: the IPMI cost per node of one operation: open a
// lanplus session (cipher suite 3), one command answered by the BMC itself
// (Get Device ID), close. Run: go test ./bootctl -run '^$' -bench IPMISession
func BenchmarkIPMISession(b *testing.B) {
	sim := ipmisim.Start(b, ipmisim.Options{})
	ctx := context.Background()
	p := IPMI{}
	for i := 0; i < b.N; i++ {
		c, err := p.connect(ctx, bmcOf(sim))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.GetDeviceID(ctx); err != nil {
			b.Fatal(err)
		}
		c.Close(ctx)
	}
}
