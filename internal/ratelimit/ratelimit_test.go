package ratelimit

import (
	"testing"
	"time"
)

// TestBucketPerIdentity: a client gets its burst, then one request per
// 1/Rate; another client has a bucket of its own; idle buckets are
// forgotten; Rate 0 and a nil limiter allow everything.
func TestBucketPerIdentity(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(Config{Rate: 10, Burst: 3})
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if !l.Allow("a") {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if l.Allow("a") {
		t.Fatal("4th request in the same instant allowed")
	}
	if !l.Allow("b") {
		t.Fatal("another client refused because of the first")
	}
	now = now.Add(100 * time.Millisecond) // one token at 10/s
	if !l.Allow("a") || l.Allow("a") {
		t.Fatal("refill is not one token per 100 ms")
	}
	now = now.Add(2 * maxIdle)
	l.Allow("c")
	if len(l.b) != 1 {
		t.Fatalf("%d buckets after everyone else was idle, want 1", len(l.b))
	}
	var nilL *Limiter
	if !nilL.Allow("x") || !New(Config{}).Allow("x") {
		t.Fatal("a nil or rate-0 limiter refused")
	}
}
