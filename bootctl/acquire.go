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

// A request for nodes: a job scheduler's prolog (or an operator) asks for
// N nodes of a group with `strata node acquire --group G --count N`. Nodes
// of the group that are up are handed out first; if there are too few,
// powered-off ones (power saving, or never started) are powered on with
// PXE and waited for until they check in. Every node handed out gets a
// request record, which power saving counts as activity, so a node just
// asked for is not powered off under the job that asked.

// Request is the record of a node handed out by Acquire (or woken).
type Request struct {
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

const xRequest = "user.strata.request"

// RecordRequest notes that node was asked for now.
func (s *Store) RecordRequest(ctx context.Context, node, by string) error {
	return s.setJSON(ctx, nodesDir+"/"+node, xRequest, Request{By: by, At: time.Now().UTC()})
}

// GetRequest returns the node's latest request (ErrNotFound if none).
func (s *Store) GetRequest(ctx context.Context, node string) (Request, error) {
	var r Request
	err := s.getJSON(ctx, nodesDir+"/"+node, xRequest, &r)
	return r, err
}

// AcquireOptions shape one request.
type AcquireOptions struct {
	Count       int           // nodes wanted (default 1)
	BootTimeout time.Duration // power-on to check-in (default 2 min)
	Power       PowerOptions
	By          string // who asks (kept in the request record)
}

// Acquired is one node handed out (or that failed to come up).
type Acquired struct {
	Node  string        `json:"node"`
	State string        `json:"state"` // up (was running), woken, failed
	Took  time.Duration `json:"took_ns"`
	Error string        `json:"error,omitempty"`
}

// ErrTooFewNodes is the error of a request that could not be met.
var ErrTooFewNodes = errors.New("bootctl: not enough nodes")

// Acquire hands out o.Count compute nodes of group, powering on and
// waiting for as many powered-off ones as needed. It returns the nodes
// handed out and those that failed to come up; it fails with
// ErrTooFewNodes when fewer than Count could be handed out.
func Acquire(ctx context.Context, st *Store, pc PowerController, group string, o AcquireOptions, log *slog.Logger) ([]Acquired, error) {
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.BootTimeout <= 0 {
		o.BootTimeout = 2 * time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nodes, err := computeNodes(ctx, st, group)
	if err != nil {
		return nil, err
	}
	if len(nodes) < o.Count {
		return nil, fmt.Errorf("%w: group %s has %d compute nodes, %d asked for", ErrTooFewNodes, group, len(nodes), o.Count)
	}
	up, off := sortByState(ctx, st, pc, nodes, o.Power)
	var out []Acquired
	for _, n := range up {
		if len(out) == o.Count {
			break
		}
		if err := st.RecordRequest(ctx, n.Name, o.By); err != nil {
			return out, err
		}
		out = append(out, Acquired{Node: n.Name, State: "up"})
	}
	if need := o.Count - len(out); need > 0 {
		if need > len(off) {
			need = len(off)
		}
		log.Info("acquire: powering on nodes of the group", "group", group, "nodes", need)
		out = append(out, wakeAll(ctx, st, pc, off[:need], o)...)
	}
	got := 0
	for _, a := range out {
		if a.State != "failed" {
			got++
		}
	}
	if got < o.Count {
		return out, fmt.Errorf("%w: group %s: %d of %d asked for are up", ErrTooFewNodes, group, got, o.Count)
	}
	return out, nil
}

// computeNodes returns the compute nodes of group (which must exist).
func computeNodes(ctx context.Context, st *Store, group string) ([]Node, error) {
	if _, err := st.GetGroup(ctx, group); err != nil {
		return nil, err
	}
	all, err := st.NodesOfGroup(ctx, group)
	if err != nil {
		return nil, err
	}
	var out []Node
	for _, n := range all {
		if n.Role == RoleCompute {
			out = append(out, n)
		}
	}
	return out, nil
}

// sortByState splits nodes into those up (powered on, checked in without
// error) and those powered off; nodes on but not checked in (booting) and
// nodes whose BMC does not answer are in neither.
func sortByState(ctx context.Context, st *Store, pc PowerController, nodes []Node, po PowerOptions) (up, off []Node) {
	res := PowerAll(ctx, pc, nodes, ActionStatus, po, nil)
	state := map[string]PowerState{}
	for _, r := range res {
		if r.Err == nil {
			state[r.Node] = r.State
		}
	}
	for _, n := range nodes {
		switch state[n.Name] {
		case PowerOff:
			off = append(off, n)
		case PowerOn:
			if ci, err := st.GetCheckIn(ctx, n.Name); err == nil && ci.Error == "" {
				up = append(up, n)
			}
		}
	}
	return up, off
}

// wakeAll powers nodes on, Concurrency at a time, and waits for each to
// check in.
func wakeAll(ctx context.Context, st *Store, pc PowerController, nodes []Node, o AcquireOptions) []Acquired {
	po := o.Power.withDefaults()
	out := make([]Acquired, len(nodes))
	sem := make(chan struct{}, po.Concurrency)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			took, err := Wake(ctx, st, pc, n, o.Power, o.BootTimeout, o.By)
			out[i] = Acquired{Node: n.Name, State: "woken", Took: took}
			if err != nil {
				out[i].State, out[i].Error = "failed", err.Error()
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// PrintAcquired writes the per-node table of a request.
func PrintAcquired(w io.Writer, res []Acquired) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tTIME")
	for _, a := range res {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Node, a.State, a.Took.Round(time.Millisecond))
	}
	tw.Flush()
	for _, a := range res {
		if a.Error != "" {
			fmt.Fprintf(w, "%s: %s\n", a.Node, a.Error)
		}
	}
}
