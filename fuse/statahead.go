package fuse

import (
	"context"
	"errors"
	"sync"
	"time"

	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// Statahead, as Lustre's: a program that stats many names of one
// directory (ls -l, find, rsync, a job checking its inputs) costs the
// kernel one LOOKUP per name, each a metadata round trip. When a
// directory sees many lookups in a short time, the mount lists it once
// with attributes (ReadDir plus, a page of entries per RPC) and answers
// the following lookups from that listing while it is younger than the
// entry timeout, telling the kernel to cache the answer only for what is
// left of that timeout: so an answer is never older than a LOOKUP round
// trip's would be after the kernel cached it, the bound the mount
// already promises between mounts (README, consistency).
//
// Within the mount, a listing is used only while nothing has changed
// through the mount since it was fetched (FS.changes), and only for
// inodes the kernel does not hold (the mount may have newer attributes
// for those); names not in the listing are looked up as usual, so a
// listing never hides a new file.
const (
	// aheadTrigger lookups in one directory within aheadWindow start a
	// listing.
	aheadTrigger = 64
	aheadWindow  = time.Second
	// aheadMax bounds the entries a listing holds (a few hundred bytes
	// each); the rest of a bigger directory is looked up name by name.
	aheadMax = 1 << 16
)

// statahead is a directory's listing state, guarded by its own mutex.
type statahead struct {
	mu       sync.Mutex
	count    int // lookups since winStart
	winStart time.Time
	fetching bool
	// entries is the last listing, fetched at at with the mount's change
	// counter at changes.
	entries map[string]*stratapb.Attr
	at      time.Time
	changes uint64
}

var errAheadFull = errors.New("statahead: listing is long enough")

// changing marks a change made through the mount, at its start and (with
// the returned function) at its end, so that no listing that may have
// seen the state before it is used after it.
func (m *FS) changing() func() {
	m.changes.Add(1)
	return func() { m.changes.Add(1) }
}

// aheadLookup answers a lookup of name in directory n from its listing,
// with the attributes and how old they are, or reports that it cannot
// (the caller then asks the metadata service). It counts the lookup and
// starts a listing when the directory is busy.
func (n *node) aheadLookup(name string) (*stratapb.Attr, time.Duration, bool) {
	ttl := min(n.m.opts.EntryTimeout, n.m.opts.AttrTimeout)
	if ttl <= 0 || n.m.opts.ReadOnly {
		return nil, 0, false // image mounts have their own caching
	}
	n.mu.Lock()
	if n.ahead == nil {
		n.ahead = &statahead{}
	}
	sa := n.ahead
	n.mu.Unlock()

	now := time.Now()
	sa.mu.Lock()
	defer sa.mu.Unlock()
	age := now.Sub(sa.at)
	if sa.entries != nil && age < ttl && sa.changes == n.m.changes.Load() {
		if a := sa.entries[name]; a != nil && n.GetChild(name) == nil {
			n.m.aheadHits.Add(1)
			return a, age, true
		}
		return nil, 0, false
	}
	sa.entries = nil
	if now.Sub(sa.winStart) > aheadWindow {
		sa.count, sa.winStart = 0, now
	}
	sa.count++
	if sa.count >= aheadTrigger && !sa.fetching {
		sa.fetching = true
		go n.fetchAhead(sa)
	}
	return nil, 0, false
}

// fetchAhead lists directory n with attributes into sa.
func (n *node) fetchAhead(sa *statahead) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start, changes := time.Now(), n.m.changes.Load()
	entries := make(map[string]*stratapb.Attr)
	err := n.m.cl.ReadDirPages(ctx, n.ino(), true, func(page []*stratapb.DirEntry) error {
		for _, e := range page {
			if e.GetAttr() != nil {
				entries[e.GetName()] = e.GetAttr()
			}
		}
		if len(entries) >= aheadMax {
			return errAheadFull
		}
		return nil
	})
	sa.mu.Lock()
	defer sa.mu.Unlock()
	sa.fetching, sa.count, sa.winStart = false, 0, time.Now()
	if err != nil && !errors.Is(err, errAheadFull) {
		n.m.log.Debug("statahead listing failed", "ino", n.ino(), "err", err)
		return
	}
	sa.entries, sa.at, sa.changes = entries, start, changes
}

// setAheadTimeouts tells the kernel to cache an answer from a listing
// only for what is left of the timeouts (its age counts).
func (n *node) setAheadTimeouts(out *gofuse.EntryOut, age time.Duration) {
	out.SetEntryTimeout(max(n.m.opts.EntryTimeout-age, time.Millisecond))
	out.SetAttrTimeout(max(n.m.opts.AttrTimeout-age, time.Millisecond))
}
