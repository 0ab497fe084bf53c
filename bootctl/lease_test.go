package bootctl

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeaseOneActiveAndTakeover: of two controllers exactly one is active
// at a time; when the active one stops, the standby takes over within a
// few TTLs.
func TestLeaseOneActiveAndTakeover(t *testing.T) {
	s, _ := newStore(t)
	var active, maxActive atomic.Int32
	var mu sync.Mutex
	leaders := []string{}
	run := func(ctx context.Context, id string) {
		l := &Lease{Store: s, ID: id, TTL: time.Second, Log: slog.New(slog.DiscardHandler)}
		l.Run(ctx, func(lctx context.Context) {
			n := active.Add(1)
			if n > maxActive.Load() {
				maxActive.Store(n)
			}
			mu.Lock()
			leaders = append(leaders, id)
			mu.Unlock()
			<-lctx.Done()
			active.Add(-1)
		})
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); run(ctxA, "a") }()
	go func() { defer wg.Done(); run(ctxB, "b") }()
	defer func() { stopA(); stopB(); wg.Wait() }()
	waitFor(t, "a leader", 20*time.Second, func() bool { return active.Load() == 1 })
	time.Sleep(3 * time.Second) // several TTLs: the holder keeps it
	mu.Lock()
	first := leaders[0]
	n := len(leaders)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("leadership changed hands without a failure: %v", leaders)
	}
	holder, err := s.LeaseHolder(context.Background())
	if err != nil || holder != first {
		t.Fatalf("LeaseHolder = %q, %v; want %s", holder, err, first)
	}
	if first == "a" {
		stopA()
	} else {
		stopB()
	}
	waitFor(t, "the standby to take over", 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(leaders) == 2 && active.Load() == 1
	})
	if maxActive.Load() != 1 {
		t.Errorf("%d controllers were active at once", maxActive.Load())
	}
}
