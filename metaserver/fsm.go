package metaserver

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// FSM is the replicated state machine: the namespace, chunk lists,
// dataserver membership and the dedup table, all in memory. Apply runs on
// raft's FSM goroutine; readers (gRPC handlers) take the read lock.
type FSM struct {
	mu      sync.RWMutex
	st      *state
	def     policy
	log     *slog.Logger
	applied atomic.Uint64
	// refused counts entries that were refused (unknown version or type,
	// undecodable); each is logged. Every voter refuses the same entries.
	refused atomic.Uint64
	// counts counts applied commands by type (snapshot restores excluded).
	counts [256]atomic.Uint64
}

// applyResult is what Apply returns through the raft future.
type applyResult struct {
	resp proto.Message
	err  error
}

func newFSM(def policy, log *slog.Logger) *FSM {
	return &FSM{st: newState(def), def: def, log: log}
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// Apply applies one committed log entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applyLocked(l)
}

// ApplyBatch applies a batch of entries under one lock acquisition.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, l := range logs {
		out[i] = f.applyLocked(l)
	}
	return out
}

func (f *FSM) applyLocked(l *raft.Log) interface{} {
	defer f.applied.Store(l.Index)
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, ok, err := decodeCommand(l.Data)
	if err != nil {
		// Refused, not half-applied: nothing in the state changes. Every
		// voter decodes the same bytes the same way, so they stay equal.
		f.refused.Add(1)
		f.log.Error("refusing raft entry", "index", l.Index, "err", err)
		return &applyResult{err: err}
	}
	if !ok {
		f.log.Warn("skipping unknown ignorable command", "index", l.Index, "type", l.Data[1])
		return &applyResult{}
	}
	return f.applyCommand(cmd)
}

func (f *FSM) applyCommand(cmd *decodedCommand) *applyResult {
	st := f.st
	now := cmd.env.NowNs
	hdr := cmd.env.Header
	var key dedupKey
	if hdr != nil && hdr.ClientId != "" {
		key = dedupKey{client: hdr.ClientId, req: hdr.RequestId}
		if e, ok := st.dedup.lookup(key); ok && e.typ == cmd.typ {
			return &applyResult{resp: e.resp, err: e.err}
		}
	}
	f.counts[cmd.typ].Add(1)
	var resp proto.Message
	err := st.checkTenant(hdr)
	if err == nil {
		resp, err = cmd.h.apply(st, now, cmd.req)
	}
	if key.client != "" {
		st.dedup.add(&dedupEntry{key: key, typ: cmd.typ, applied: now, resp: resp, err: err})
	}
	return &applyResult{resp: resp, err: err}
}

// read runs fn with the state locked for reading.
func (f *FSM) read(fn func(s *state) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return fn(f.st)
}

// AppliedIndex is the index of the last entry applied.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Snapshot captures a copy of the state; Persist writes it out while Apply
// goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &fsmSnapshot{st: f.st.clone(), log: f.log}, nil
}

// Restore replaces the state with a snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc, f.def)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	return nil
}

// errnoOf digs the namespace errno out of an apply error, if it has one.
func errnoOf(err error) (*nsError, bool) {
	var ne *nsError
	ok := errors.As(err, &ne)
	return ne, ok
}
