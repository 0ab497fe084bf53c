package testcluster

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Parallel runs op(0..n-1) from `inflight` goroutines (a pipelining client:
// many requests in flight at once), reports the first error, and returns
// the operations per second.
func Parallel(tb testing.TB, n, inflight int, op func(i int) error) float64 {
	tb.Helper()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := op(i); err != nil && failed.Add(1) == 1 {
					tb.Errorf("operation %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}
