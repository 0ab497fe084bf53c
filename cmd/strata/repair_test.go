package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// TestRepairCLI drives the self-healing commands against a real cluster:
// repair set (and its bad input), repair status, data drain with progress
// to the end, data remove, and status showing the repair section.
func TestRepairCLI(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Data: 7, Heal: true})
	for i := 0; i < 4; i++ {
		putFile(t, c, fmt.Sprintf("/f%d", i), randomBytes(1<<20, uint64(i)))
	}
	for _, bad := range [][]string{
		{"repair", "set", "--rate", "0"},
		{"repair", "set", "--rate", "-3"},
		{"repair", "set", "--concurrency", "0"},
		{"repair", "set"},
		{"data", "drain", "abc"},
	} {
		code, _, errs := cli(t, c, bad...)
		if code != 2 || errs == "" {
			t.Errorf("strata %s: exit %d (%q), want 2 with a message", strings.Join(bad, " "), code, errs)
		}
	}
	if code, _, errs := cli(t, c, "data", "drain", "999"); code != 1 || !strings.Contains(errs, "no dataserver 999") {
		t.Errorf("drain of unknown server: exit %d, %q", code, errs)
	}
	out := mustCLI(t, c, "repair", "set", "--rate", "100", "--concurrency", "4")
	if !strings.Contains(out, "concurrency 4, rate 100.0 MB/s") {
		t.Errorf("repair set printed %q", out)
	}
	out = mustCLI(t, c, "repair", "status")
	for _, want := range []string{"stripes:", "queue:", "rate:", "limit 100.0 MB/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("repair status lacks %q:\n%s", want, out)
		}
	}
	id := c.Data[0].Srv.ID()
	out = mustCLI(t, c, "data", "drain", "--interval", "200ms", fmt.Sprint(id))
	if !strings.Contains(out, "holds nothing") {
		t.Errorf("drain output:\n%s", out)
	}
	mustCLI(t, c, "data", "remove", fmt.Sprint(id))
	out = mustCLI(t, c, "status")
	if !strings.Contains(out, "stripes:") {
		t.Errorf("status lacks the repair section:\n%s", out)
	}
	c.KillData(0) // removed: it must not come back under its old id
	for i := 0; i < 4; i++ {
		checkFile(t, c, fmt.Sprintf("/f%d", i), randomBytes(1<<20, uint64(i)))
	}
}

// TestPrintRepairYielding: repair status says when the scheduler runs
// fewer rebuilds because clients are busy, and only then.
func TestPrintRepairYielding(t *testing.T) {
	conc := uint32(8)
	for _, tc := range []struct {
		active uint32
		want   bool
	}{{2, true}, {8, false}, {0, false}} {
		st := &stratapb.RepairStatusResponse{QueueShards: 10, QueueBytes: 10 << 20, ClientBytesPerSec: 300 << 20,
			ActiveConcurrency: tc.active, Config: &stratapb.RepairConfig{Concurrency: conc}}
		var b strings.Builder
		printRepair(&b, st)
		got := strings.Contains(b.String(), "yielding to clients") && strings.Contains(b.String(), "2 of 8 rebuilds")
		if got != tc.want {
			t.Errorf("active %d of %d: yielding line shown %v, want %v:\n%s", tc.active, conc, got, tc.want, b.String())
		}
	}
}
