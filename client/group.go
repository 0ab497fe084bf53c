package client

import (
	"context"
	"sync"
)

// group runs functions concurrently with a bound, cancels the rest at the
// first error and reports that error, like golang.org/x/sync/errgroup with
// SetLimit (which this module does not depend on).
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func newGroup(ctx context.Context, limit int) *group {
	ctx, cancel := context.WithCancel(ctx)
	return &group{ctx: ctx, cancel: cancel, sem: make(chan struct{}, max(limit, 1))}
}

func (g *group) fail(err error) {
	g.once.Do(func() {
		g.err = err
		g.cancel()
	})
}

// Go runs fn once a slot is free. It blocks while all slots are busy; once
// the group has failed it runs nothing more.
func (g *group) Go(fn func(ctx context.Context) error) {
	select {
	case g.sem <- struct{}{}:
	case <-g.ctx.Done():
		g.fail(g.ctx.Err())
		return
	}
	g.wg.Add(1)
	go func() {
		defer func() {
			<-g.sem
			g.wg.Done()
		}()
		if g.ctx.Err() != nil {
			g.fail(g.ctx.Err())
			return
		}
		if err := fn(g.ctx); err != nil {
			g.fail(err)
		}
	}()
}

// Wait waits for every started function and returns the first error.
func (g *group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
