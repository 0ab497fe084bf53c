package bootctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"text/tabwriter"
	"time"
)

// PowerOptions bound a bulk power operation.
type PowerOptions struct {
	Concurrency int           // nodes at once (default 8)
	Timeout     time.Duration // per node, per attempt (default 10 s)
	Retries     int           // extra attempts after a failure (default 2)
	RetryDelay  time.Duration // between attempts (default 500 ms)
	// PXE sets the boot device to PXE before on and cycle.
	PXE bool
	// Audit records every node's power action (audit.go).
	Audit Audit
}

func (o PowerOptions) withDefaults() PowerOptions {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 2
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 500 * time.Millisecond
	}
	return o
}

// PowerResult is the outcome for one node.
type PowerResult struct {
	Node     string        `json:"node"`
	BMC      string        `json:"bmc"`
	Action   Action        `json:"action"`
	State    PowerState    `json:"state"`
	Attempts int           `json:"attempts"`
	Took     time.Duration `json:"took_ns"`
	Err      error         `json:"-"`
	Error    string        `json:"error,omitempty"`
}

// PowerAll runs a on every node, Concurrency at a time, each attempt
// bounded by Timeout and retried Retries times. It returns one result per
// node, in node-name order; it never stops early because one node failed.
func PowerAll(ctx context.Context, pc PowerController, nodes []Node, a Action, o PowerOptions, log *slog.Logger) []PowerResult {
	o = o.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := make([]PowerResult, len(nodes))
	sem := make(chan struct{}, o.Concurrency)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res[i] = powerOne(ctx, pc, n, a, o, log)
		}()
	}
	wg.Wait()
	sort.Slice(res, func(i, j int) bool { return res[i].Node < res[j].Node })
	return res
}

func powerOne(ctx context.Context, pc PowerController, n Node, a Action, o PowerOptions, log *slog.Logger) PowerResult {
	r := PowerResult{Node: n.Name, BMC: n.BMC.Addr, Action: a}
	start := time.Now()
	for r.Attempts = 1; ; r.Attempts++ {
		actx, cancel := context.WithTimeout(ctx, o.Timeout)
		r.State, r.Err = pc.Do(actx, n.BMC, a, o.PXE)
		cancel()
		// A refused password will be refused again: no retry.
		if r.Err == nil || r.Attempts > o.Retries || ctx.Err() != nil || noRetry(r.Err) {
			break
		}
		log.Warn("power action failed; retrying", "node", n.Name, "action", a, "attempt", r.Attempts, "err", r.Err)
		select {
		case <-ctx.Done():
		case <-time.After(o.RetryDelay):
		}
	}
	r.Took = time.Since(start)
	if r.Err != nil {
		r.Err = fmt.Errorf("node %s: %s: %w", n.Name, a, r.Err)
		r.Error = r.Err.Error()
		log.Error("power action failed", "node", n.Name, "action", a, "attempts", r.Attempts, "err", r.Err)
	} else {
		log.Info("power action done", "node", n.Name, "action", a, "state", r.State, "took", r.Took)
	}
	o.Audit.power(ctx, n, r)
	return r
}

// noRetry: errors that another attempt cannot fix (a refused password,
// a password that cannot be decrypted).
func noRetry(err error) bool {
	return errors.Is(err, ErrBMCAuth) || errors.Is(err, ErrNoBMCKey) || errors.Is(err, ErrWrongBMCKey)
}

// Failed counts the results with an error.
func Failed(res []PowerResult) int {
	n := 0
	for _, r := range res {
		if r.Err != nil || r.Error != "" {
			n++
		}
	}
	return n
}

// PrintPowerResults writes the per-node result table, then the full error
// of each failed node below it (errors are long; the table stays readable).
func PrintPowerResults(w io.Writer, res []PowerResult) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tBMC\tACTION\tSTATE\tRESULT\tATTEMPTS\tTIME")
	for _, r := range res {
		result := "ok"
		if r.Error != "" {
			result = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Node, r.BMC, r.Action, r.State, result, r.Attempts, r.Took.Round(time.Millisecond))
	}
	tw.Flush()
	for _, r := range res {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Node, r.Error)
		}
	}
}
