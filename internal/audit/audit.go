// Package audit records security-relevant actions (tenant and quota
// changes, certificate issue, power actions, group switches, failed
// authentications) as structured JSON records, one per line.
//
// The audit log is separate from the daemon's operational log so that an
// operator can keep it longer, ship it elsewhere and grep it without noise.
// Records never carry secrets (passwords, tokens, private keys): callers
// pass names and identities only.
package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Outcome of an audited action.
const (
	Allowed = "allowed" // the action was authorised and carried out
	Denied  = "denied"  // refused: bad credentials, wrong role, no permission
	Failed  = "failed"  // authorised but it did not succeed
)

// Log writes audit records. The zero value and a nil *Log discard records,
// so code paths that have no audit log configured (unit tests) need no
// special case.
type Log struct {
	mu  sync.Mutex
	l   *slog.Logger
	c   io.Closer
	log *slog.Logger // operational log that mirrors records at Info
}

// New returns a Log writing JSON lines to w. mirror, if not nil, also gets
// every record (so `strata dev` shows them on the console).
func New(w io.Writer, mirror *slog.Logger) *Log {
	return &Log{l: slog.New(slog.NewJSONHandler(w, nil)), log: mirror}
}

// Open appends to the audit log file at path (created 0600, directories
// 0700), for daemons that keep their audit trail in their data directory.
func Open(path string, mirror *slog.Logger) (*Log, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	a := New(f, mirror)
	a.c = f
	return a, nil
}

// Record writes one audit record: who did what to which object, and the
// outcome (Allowed, Denied or Failed). attrs add detail (slog key/value
// pairs or slog.Attr values); never pass secrets.
func (a *Log) Record(ctx context.Context, action, actor, object, outcome string, attrs ...any) {
	if a == nil || a.l == nil {
		return
	}
	args := append([]any{"audit", true, "action", action, "actor", actor, "object", object, "outcome", outcome}, attrs...)
	a.mu.Lock()
	a.l.InfoContext(ctx, "audit", args...)
	a.mu.Unlock()
	if a.log != nil {
		a.log.InfoContext(ctx, "audit "+action, args[2:]...)
	}
}

// Close closes the underlying file, if Open made one.
func (a *Log) Close() error {
	if a == nil || a.c == nil {
		return nil
	}
	return a.c.Close()
}
