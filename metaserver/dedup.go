package metaserver

import (
	"google.golang.org/protobuf/proto"
)

// The dedup table remembers the outcome of recent requests by (client id,
// request id), so that a request retried after a lost reply or a leader
// change is answered with its first outcome instead of being applied twice.
// It lives in the FSM (and its snapshots), so a new leader knows what the
// old one applied. It is bounded in entries and in age; both bounds are
// evaluated from command timestamps, so every voter evicts the same entries.
const (
	defaultDedupEntries = 200_000
	defaultDedupAge     = 15 * 60 * 1e9 // ns; far longer than any client retries
)

type dedupKey struct {
	client string
	req    uint64
}

type dedupEntry struct {
	key     dedupKey
	typ     CommandType
	applied int64
	resp    proto.Message
	err     error
}

type dedupTable struct {
	max     int
	maxAge  int64
	entries map[dedupKey]*dedupEntry
	// fifo holds entries in apply order for eviction; head is the oldest.
	fifo []*dedupEntry
	head int
}

func newDedupTable(max int, maxAge int64) *dedupTable {
	return &dedupTable{max: max, maxAge: maxAge, entries: make(map[dedupKey]*dedupEntry)}
}

func (d *dedupTable) lookup(k dedupKey) (*dedupEntry, bool) {
	e, ok := d.entries[k]
	return e, ok
}

func (d *dedupTable) add(e *dedupEntry) {
	if _, ok := d.entries[e.key]; ok {
		return
	}
	d.entries[e.key] = e
	d.fifo = append(d.fifo, e)
	d.evict(e.applied)
}

func (d *dedupTable) evict(now int64) {
	for d.head < len(d.fifo) {
		e := d.fifo[d.head]
		if len(d.entries) <= d.max && now-e.applied <= d.maxAge {
			break
		}
		delete(d.entries, e.key)
		d.fifo[d.head] = nil
		d.head++
	}
	// Compact the queue once the dead prefix dominates it.
	if d.head > 1024 && d.head > len(d.fifo)/2 {
		d.fifo = append([]*dedupEntry(nil), d.fifo[d.head:]...)
		d.head = 0
	}
}

// live returns the entries in apply order (for snapshots).
func (d *dedupTable) live() []*dedupEntry {
	return append([]*dedupEntry(nil), d.fifo[d.head:]...)
}

func (d *dedupTable) len() int { return len(d.entries) }
