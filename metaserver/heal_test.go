package metaserver_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// TestHealKillThreeOneAtATime: 4+2 on 8 dataservers. Kill one; every stripe
// comes back to 6 shards on live, distinct servers; then a second. A third
// leaves 5 servers for 6-wide stripes: every stripe keeps 5 shards (all the
// servers there are) and every file still reads back byte-identical.
// STRATA_HEAL_BIG=1 writes the 2 GiB instead of 64 MiB.
func TestHealKillThreeOneAtATime(t *testing.T) {
	total, size, chunk := 64<<20, 4<<20, uint32(1<<20)
	if bigRun() {
		total, size, chunk = 2<<30, 64<<20, 4<<20
	}
	pol := healPolicy()
	pol.ChunkSize = chunk
	e := newHealEnv(t, testcluster.Options{Data: 8, Policy: pol, RepairDelay: 2 * time.Second})
	e.write("f", total, size)
	dead := map[uint32]bool{}
	for round, victim := range []int{0, 1, 2} {
		dead[e.dataID(victim)] = true
		start := time.Now()
		e.cl.KillData(victim)
		width := 6
		if round == 2 {
			width = 5
		}
		e.waitStripes(dead, width, 5*time.Minute)
		t.Logf("round %d: stripes back to %d shards after %v", round+1, width, time.Since(start).Round(time.Millisecond))
		e.verify()
	}
	waitCond(t, 30*time.Second, "the 3 killed servers recorded as lost", func() bool { return len(e.status().LostServers) == 3 })
	if st := e.status(); st.LostStripes != 0 {
		t.Fatalf("%d stripes lost", st.LostStripes)
	}
}

// TestHealBadInput: drain of an unknown server, repair rates of 0 and
// below, and a zero concurrency are refused with clear errors.
func TestHealBadInput(t *testing.T) {
	e := newHealEnv(t, testcluster.Options{Data: 6})
	e.write("b", 4<<20, 1<<20)
	ctx := hctx(t)
	err := e.c.Drain(ctx, 999, false)
	if !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), "no dataserver 999") {
		t.Fatalf("drain of unknown server: %v, want ENOENT naming it", err)
	}
	if err := e.c.RemoveDataServer(ctx, 999); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("remove of unknown server: %v, want ENOENT", err)
	}
	for _, r := range []int64{0, -5} {
		err := setRate(e, r)
		if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "positive") {
			t.Fatalf("rate %d: %v, want EINVAL saying it must be positive", r, err)
		}
	}
	zero := uint32(0)
	if _, err := e.c.SetRepairConfig(ctx, client.RepairSettings{Concurrency: &zero}); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("concurrency 0: %v, want EINVAL", err)
	}
	// Removing a server that still holds shards is refused.
	if err := e.c.RemoveDataServer(ctx, e.dataID(0)); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("remove of a full server: %v, want EBUSY", err)
	}
	e.verify()
	st := e.status()
	if st.Config.RateBytesPerSec == 0 || st.Config.Concurrency == 0 {
		t.Fatalf("config changed by refused requests: %v", st.Config)
	}
}

func setRate(e *healEnv, r int64) error {
	_, err := e.c.SetRepairConfig(hctx(e.t), client.RepairSettings{RateBytes: &r})
	return err
}
