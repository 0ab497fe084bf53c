package bootctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Lease elects one active boot controller among several (the others are
// standbys) through the metadata service, with no clock shared between
// them:
//
//   - the lease is the highest-numbered entry /.bootctl/lease/EPOCH; its
//     xattr holds the holder's id and a counter the holder bumps every
//     TTL/4;
//   - a standby that sees neither the epoch nor the counter change for a
//     whole TTL (measured on its own clock) claims EPOCH+1 with an
//     exclusive create: of several standbys exactly one wins;
//   - the holder steps down as soon as it sees a higher epoch, or when it
//     has not renewed successfully for TTL/2, well before any standby may
//     take over.
type Lease struct {
	Store *Store
	ID    string
	TTL   time.Duration // default 6 s
	Log   *slog.Logger
}

type leaseRecord struct {
	Holder  string `json:"holder"`
	Counter uint64 `json:"counter"`
}

// Run campaigns until ctx ends. While this controller holds the lease it
// runs lead with a context that is cancelled when the lease is lost.
func (l *Lease) Run(ctx context.Context, lead func(ctx context.Context)) {
	ttl := l.TTL
	if ttl <= 0 {
		ttl = 6 * time.Second
	}
	var seenEpoch, seenCounter uint64
	seenAt := time.Now()
	for ctx.Err() == nil {
		epoch, rec, err := l.current(ctx)
		switch {
		case err != nil:
			l.Log.Warn("lease: cannot read", "err", err)
		case epoch != seenEpoch || rec.Counter != seenCounter:
			seenEpoch, seenCounter, seenAt = epoch, rec.Counter, time.Now()
		case epoch == 0 || time.Since(seenAt) > ttl:
			if l.claim(ctx, epoch+1) {
				l.Log.Info("lease: acquired; this controller is active", "epoch", epoch+1, "id", l.ID)
				l.hold(ctx, epoch+1, ttl, lead)
				l.Log.Info("lease: lost; this controller is a standby", "epoch", epoch+1, "id", l.ID)
				seenAt = time.Now()
			}
		}
		sleepCtx(ctx, ttl/6)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func epochName(e uint64) string { return fmt.Sprintf("%020d", e) }

// current returns the highest epoch and its record (0 if none).
func (l *Lease) current(ctx context.Context) (uint64, leaseRecord, error) {
	names, err := l.Store.names(ctx, leaseDir)
	if err != nil || len(names) == 0 {
		return 0, leaseRecord{}, err
	}
	last := names[len(names)-1]
	epoch, err := strconv.ParseUint(last, 10, 64)
	if err != nil {
		return 0, leaseRecord{}, fmt.Errorf("lease entry %q: %w", last, err)
	}
	var rec leaseRecord
	if err := l.Store.getJSON(ctx, leaseDir+"/"+last, xLease, &rec); err != nil && !errors.Is(err, ErrNotFound) {
		return 0, leaseRecord{}, err
	}
	return epoch, rec, nil
}

func (l *Lease) claim(ctx context.Context, epoch uint64) bool {
	p := leaseDir + "/" + epochName(epoch)
	ino, err := l.Store.createExcl(ctx, p)
	if err != nil {
		if !errors.Is(err, ErrExists) {
			l.Log.Warn("lease: claim failed", "err", err)
		}
		return false
	}
	if err := l.Store.setJSONIno(ctx, ino, p, xLease, leaseRecord{Holder: l.ID}); err != nil {
		l.Log.Warn("lease: claim failed", "err", err)
		return false
	}
	if epoch > 2 { // keep the two latest entries for the curious
		_ = l.Store.remove(ctx, leaseDir+"/"+epochName(epoch-2))
	}
	return true
}

// hold renews the lease and runs lead until the lease is lost.
func (l *Lease) hold(ctx context.Context, epoch uint64, ttl time.Duration, lead func(context.Context)) {
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); lead(lctx) }()
	defer func() { cancel(); <-done }()
	p := leaseDir + "/" + epochName(epoch)
	lastOK := time.Now()
	for counter := uint64(1); ctx.Err() == nil; counter++ {
		sleepCtx(ctx, ttl/4)
		cur, rec, err := l.current(ctx)
		if err == nil && cur != epoch {
			l.Log.Warn("lease: another controller holds a newer epoch; stepping down", "mine", epoch, "current", cur, "holder", rec.Holder)
			return
		}
		if err == nil {
			rctx, rcancel := context.WithTimeout(ctx, ttl/4)
			err = l.Store.setJSON(rctx, p, xLease, leaseRecord{Holder: l.ID, Counter: counter})
			rcancel()
		}
		if err == nil {
			lastOK = time.Now()
		} else if time.Since(lastOK) > ttl/2 {
			l.Log.Warn("lease: could not renew; stepping down", "err", err)
			return
		}
	}
}

// Holder returns the id of the current lease holder ("" if none).
func (s *Store) LeaseHolder(ctx context.Context) (string, error) {
	l := Lease{Store: s}
	_, rec, err := l.current(ctx)
	return rec.Holder, err
}
