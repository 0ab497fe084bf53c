package dataserver

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"
)

// ioClassKey is the gRPC metadata key that marks shard reads made for
// repair (a rebuild reading its sources), so that they do not count as
// client load.
const (
	ioClassKey    = "strata-io-class"
	ioClassRepair = "repair"
)

// repairIO marks the outgoing calls of ctx as repair traffic.
func repairIO(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, ioClassKey, ioClassRepair)
}

func isRepairIO(ctx context.Context) bool {
	for _, v := range metadata.ValueFromIncomingContext(ctx, ioClassKey) {
		if v == ioClassRepair {
			return true
		}
	}
	return false
}

// foreground meters the client shard I/O this server serves; heartbeats
// carry its rate so that the leader's repair scheduler can give clients
// priority.
type foreground struct {
	bytes atomic.Uint64

	mu        sync.Mutex
	lastBytes uint64
	lastAt    time.Time
}

// add counts n bytes read or written for the call of ctx, unless it is
// repair traffic.
func (f *foreground) add(ctx context.Context, n int) {
	if !isRepairIO(ctx) {
		f.bytes.Add(uint64(n))
	}
}

// rate is the client I/O per second since the previous call.
func (f *foreground) rate(now time.Time) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.bytes.Load()
	var out uint64
	if dt := now.Sub(f.lastAt); !f.lastAt.IsZero() && dt > 0 {
		out = uint64(float64(b-f.lastBytes) / dt.Seconds())
	}
	f.lastBytes, f.lastAt = b, now
	return out
}
