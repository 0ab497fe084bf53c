package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// TestQuotaLimits: a tenant at its byte or file limit gets EDQUOT with a
// "quota exceeded" message; a directory quota nests inside the tenant's;
// renames across quota boundaries get EXDEV.
func TestQuotaLimits(t *testing.T) {
	cl, admin := newClusterClient(t, 6)
	ctx := ctxFor(t)
	tok, _, err := admin.CreateTenant(ctx, "alpha", client.TenantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := tenantClient(t, cl, tok)
	if _, err := a.SetQuota(ctx, client.QuotaTarget{Tenant: "alpha"}, 1, 1); err == nil {
		t.Fatal("a tenant set its own tenant quota")
	}
	if _, err := admin.SetQuota(ctx, client.QuotaTarget{Tenant: "alpha"}, 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, "/f1", bytes.NewReader(pattern(700<<10, 1)), client.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Put(ctx, "/f2", bytes.NewReader(pattern(400<<10, 2)), client.PutOptions{})
	if !errors.Is(err, syscall.EDQUOT) || !strings.Contains(err.Error(), "quota exceeded") {
		t.Fatalf("write past the byte quota: %v, want EDQUOT with 'quota exceeded'", err)
	}
	if got, err := getAll(t, a, "/f1"); err != nil || !bytes.Equal(got, pattern(700<<10, 1)) {
		t.Fatalf("f1 after the refused write: %v", err)
	}

	// Directory quota: 3 inodes (the directory itself is one).
	if _, err := a.Mkdir(ctx, "/d", 0o755); err != nil {
		t.Fatal(err)
	}
	q, err := a.SetQuota(ctx, client.QuotaTarget{Path: "/d"}, 0, 3)
	if err != nil || q.GetUsedFiles() != 1 || q.GetPath() != "/d" {
		t.Fatalf("dir quota: %v %v", q, err)
	}
	for _, name := range []string{"/d/a", "/d/b"} {
		if _, err := a.Mkdir(ctx, name, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Mkdir(ctx, "/d/c", 0o755); !errors.Is(err, syscall.EDQUOT) {
		t.Fatalf("fourth inode under a 3-file quota: %v, want EDQUOT", err)
	}
	if err := a.Rename(ctx, "/f1", "/d/a/f1"); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename into another quota: %v, want EXDEV", err)
	}
	if err := a.Rename(ctx, "/d/b", "/d/a/b"); err != nil {
		t.Fatalf("rename inside one quota: %v", err)
	}
	if err := a.Remove(ctx, "/f1"); err != nil {
		t.Fatal(err)
	}
	quotas, err := a.ListQuotas(ctx)
	if err != nil || len(quotas) != 2 {
		t.Fatalf("quotas: %v %v", quotas, err)
	}
	// The refused /f2 stays, as far as it got (as cp leaves a partial
	// copy on a full disk); usage is what the tree holds.
	wb, wf := walkUsage(ctx, t, a)
	for _, q := range quotas {
		if q.GetTenantQuota() && (q.GetUsedBytes() != wb || q.GetUsedFiles() != wf || wf != 5) {
			t.Errorf("tenant usage after removal: %d bytes, %d files; the tree holds %d, %d (/, /d, /d/a, /d/a/b, /f2)", q.GetUsedBytes(), q.GetUsedFiles(), wb, wf)
		}
	}
}

// walkUsage adds up what a tenant's tree holds, as the tenant sees it:
// logical bytes of regular files (hard links once) and inodes.
func walkUsage(ctx context.Context, t *testing.T, c *client.Client) (bytes, files uint64) {
	seen := map[uint64]bool{}
	var walk func(ino uint64)
	walk = func(ino uint64) {
		ents, err := c.ReadDirAt(ctx, ino, true)
		if err != nil {
			t.Fatalf("readdir %d: %v", ino, err)
		}
		for _, e := range ents {
			a := e.GetAttr()
			if seen[a.GetIno()] {
				continue
			}
			seen[a.GetIno()] = true
			files++
			switch a.GetType() {
			case stratapb.FileType_REGULAR:
				bytes += a.GetSize()
			case stratapb.FileType_DIRECTORY:
				walk(a.GetIno())
			}
		}
	}
	walk(1)
	return bytes, files + 1 // the root
}

func tenantQuota(ctx context.Context, t *testing.T, c *client.Client) *stratapb.Quota {
	var q *stratapb.Quota
	pollFor(t, 60*time.Second, "quota list", func() bool {
		qs, err := c.ListQuotas(ctx)
		for _, x := range qs {
			if x.GetTenantQuota() {
				q = x
			}
		}
		return err == nil && q != nil
	})
	return q
}

// TestQuotaFailover: writers fill a tenant up to its byte quota while the
// metadata leader is killed; afterwards the usage the service reports
// equals what the tree holds, on the new leader and on a leader that
// restored from a raft snapshot, and every file written reads back.
func TestQuotaFailover(t *testing.T) {
	cl := testcluster.New(t, testcluster.Options{Meta: 3, Data: 6, SnapshotThreshold: 32, TrailingLogs: 16})
	ctx := ctxFor(t)
	admin := tenantClient(t, cl, "")
	tok, _, err := admin.CreateTenant(ctx, "beta", client.TenantOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const limit = 6 << 20
	if _, err := admin.SetQuota(ctx, client.QuotaTarget{Tenant: "beta"}, limit, 0); err != nil {
		t.Fatal(err)
	}
	b := tenantClient(t, cl, tok)

	var (
		mu      sync.Mutex
		written = map[string][]byte{}
		full    = map[int]bool{}
		wg      sync.WaitGroup
		count   sync.WaitGroup
	)
	count.Add(4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; ; i++ {
				if i == 5 {
					count.Done()
				}
				p := fmt.Sprintf("/w%d-%03d", w, i)
				data := pattern(8<<10+r.IntN(120<<10), uint64(w*1000+i))
				_, err := b.Put(ctx, p, bytes.NewReader(data), client.PutOptions{})
				if errors.Is(err, syscall.EDQUOT) {
					mu.Lock()
					full[w] = true
					mu.Unlock()
					if i < 5 {
						count.Done()
					}
					return
				}
				if err != nil {
					t.Errorf("put %s: %v", p, err)
					if i < 5 {
						count.Done()
					}
					return
				}
				mu.Lock()
				written[p] = data
				mu.Unlock()
			}
		}()
	}
	count.Wait() // every writer is under way
	old := cl.WaitLeader()
	cl.KillMeta(old)
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(full) != 4 {
		t.Fatalf("writers stopped without EDQUOT: %v", full)
	}

	check := func(when string) {
		t.Helper()
		wb, wf := walkUsage(ctx, t, b)
		q := tenantQuota(ctx, t, b)
		if q.GetUsedBytes() != wb || q.GetUsedFiles() != wf {
			t.Fatalf("%s: quota says %d bytes, %d files; the tree holds %d bytes, %d files", when, q.GetUsedBytes(), q.GetUsedFiles(), wb, wf)
		}
		if wb > limit {
			t.Fatalf("%s: %d bytes stored past the %d limit", when, wb, limit)
		}
	}
	check("after failover")
	cl.RestartMeta(old)
	// Let the restarted server catch up, then make it lead: kill the others
	// in turn until it does.
	// Catching up means reaching what the leader had applied when the
	// restart began: the leader keeps applying (heartbeats, keys), so
	// chasing its current index can take forever on a loaded machine.
	var target uint64
	pollFor(t, 60*time.Second, "a leader after the restart", func() bool {
		l := cl.Leader()
		if l < 0 || l == old || cl.Meta[l].Srv == nil {
			return false
		}
		target = cl.Meta[l].Srv.Stats().AppliedIndex
		return true
	})
	pollFor(t, 60*time.Second, "restarted server catches up", func() bool {
		return cl.Meta[old].Srv != nil && cl.Meta[old].Srv.Stats().AppliedIndex >= target
	})
	for try := 0; try < 8; try++ {
		l := cl.WaitLeader()
		if l == old {
			break
		}
		cl.KillMeta(l)
		l2 := cl.WaitLeader()
		cl.RestartMeta(l)
		if l2 == old {
			break
		}
	}
	check(fmt.Sprintf("with leader %d", cl.WaitLeader()))
	for p, want := range written {
		got, err := getAll(t, b, p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after failover: %v (got %d bytes, want %d)", p, err, len(got), len(want))
		}
	}
	t.Logf("%d files written before EDQUOT; usage exact after failover and restore", len(written))
}

// pollFor waits until cond holds, failing the test after timeout.
func pollFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
