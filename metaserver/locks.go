package metaserver

import (
	"maps"
	"math"
	"slices"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// The lock table: cluster-wide advisory locks (flock and POSIX byte-range
// locks) in the raft state, so that mounts on different nodes exclude each
// other and locks survive a leader failover.
//
// Every lock belongs to a session (one per mount) and, inside it, to the
// kernel's lock owner (an open file description for flock, a process for
// POSIX locks). A session lives while its lease does: the mount renews it
// (KeepAlive); a lease that lapses (a node that died or was cut off)
// releases every lock of the session. Lapsed sessions are swept when the
// next lock command is applied, with the leader's clock reading carried
// in the log entry, so every voter sweeps the same sessions; reads
// (GetLock) ignore lapsed sessions by the leader's clock.
//
// A FileLock stored here is never changed in place: splitting a range
// makes new ones, so a snapshot's copy of the slices is enough.

const (
	// CmdLockKeepAlive, CmdSetLock and CmdReleaseLocks are the lock
	// table's commands (the ha range of command numbers, 64-79).
	CmdLockKeepAlive CommandType = 64
	CmdSetLock       CommandType = 65
	CmdReleaseLocks  CommandType = 66

	minLockTTL = 500 * time.Millisecond
	maxLockTTL = 10 * time.Minute
	lockToEOF  = math.MaxUint64
)

func init() {
	registerCommand(CmdLockKeepAlive, "lock-keepalive", newMsg[stratapb.LockKeepAliveRequest], newMsg[stratapb.LockKeepAliveResponse], (*state).lockKeepAlive)
	registerCommand(CmdSetLock, "set-lock", newMsg[stratapb.SetLockRequest], newMsg[stratapb.SetLockResponse], (*state).setLock)
	registerCommand(CmdReleaseLocks, "release-locks", newMsg[stratapb.ReleaseLocksRequest], newMsg[stratapb.ReleaseLocksResponse], (*state).releaseLocks)
}

type lockTable struct {
	sessions map[string]int64 // session -> lease expiry, leader ns
	byIno    map[uint64][]*stratapb.FileLock
}

func newLockTable() lockTable {
	return lockTable{sessions: map[string]int64{}, byIno: map[uint64][]*stratapb.FileLock{}}
}

func (t lockTable) clone() lockTable {
	c := lockTable{sessions: maps.Clone(t.sessions), byIno: make(map[uint64][]*stratapb.FileLock, len(t.byIno))}
	for ino, l := range t.byIno {
		c.byIno[ino] = slices.Clone(l)
	}
	return c
}

// sweep ends every session whose lease lapsed before now.
func (t lockTable) sweep(now int64) {
	for s, exp := range t.sessions {
		if exp < now {
			t.endSession(s)
		}
	}
}

func (t lockTable) endSession(session string) {
	delete(t.sessions, session)
	for ino, locks := range t.byIno {
		t.set(ino, slices.DeleteFunc(locks, func(l *stratapb.FileLock) bool { return l.Session == session }))
	}
}

// set stores an inode's locks, dropping the entry when none are left.
func (t lockTable) set(ino uint64, locks []*stratapb.FileLock) {
	if len(locks) == 0 {
		delete(t.byIno, ino)
		return
	}
	t.byIno[ino] = locks
}

func (s *state) lockKeepAlive(now int64, r *stratapb.LockKeepAliveRequest) (*stratapb.LockKeepAliveResponse, error) {
	if r.Session == "" {
		return nil, errnof(syscall.EINVAL, "lock session: empty id")
	}
	t := s.locks
	t.sweep(now)
	if r.End {
		t.endSession(r.Session)
		return &stratapb.LockKeepAliveResponse{}, nil
	}
	ttl := time.Duration(r.TtlMs) * time.Millisecond
	if ttl < minLockTTL || ttl > maxLockTTL {
		return nil, errnof(syscall.EINVAL, "lock session %s: lease of %v, want %v to %v", r.Session, ttl, minLockTTL, maxLockTTL)
	}
	_, renewed := t.sessions[r.Session]
	t.sessions[r.Session] = now + ttl.Nanoseconds()
	return &stratapb.LockKeepAliveResponse{Renewed: renewed}, nil
}

// checkLock validates a lock request and normalises a flock to the whole
// file.
func checkLock(l *stratapb.FileLock) (*stratapb.FileLock, error) {
	if l == nil || l.Session == "" {
		return nil, errnof(syscall.EINVAL, "lock: no session")
	}
	c := &stratapb.FileLock{Session: l.Session, Owner: l.Owner, Kind: l.Kind, Type: l.Type, Start: l.Start, End: l.End, Pid: l.Pid}
	switch c.Kind {
	case stratapb.LockKind_LOCK_KIND_FLOCK:
		c.Start, c.End = 0, lockToEOF
	case stratapb.LockKind_LOCK_KIND_POSIX:
		if c.Start > c.End {
			return nil, errnof(syscall.EINVAL, "lock: range %d-%d", c.Start, c.End)
		}
	default:
		return nil, errnof(syscall.EINVAL, "lock: kind %d", c.Kind)
	}
	if c.Type < stratapb.LockType_LOCK_TYPE_UNLOCK || c.Type > stratapb.LockType_LOCK_TYPE_WRITE {
		return nil, errnof(syscall.EINVAL, "lock: type %d", c.Type)
	}
	return c, nil
}

func (s *state) setLock(now int64, r *stratapb.SetLockRequest) (*stratapb.SetLockResponse, error) {
	want, err := checkLock(r.Lock)
	if err != nil {
		return nil, err
	}
	if _, err := s.get(r.Ino); err != nil {
		return nil, err
	}
	t := s.locks
	t.sweep(now)
	if _, ok := t.sessions[want.Session]; !ok {
		return nil, errnof(syscall.ENOLCK, "lock session %s unknown or lapsed", want.Session)
	}
	locks := t.byIno[r.Ino]
	if want.Type != stratapb.LockType_LOCK_TYPE_UNLOCK {
		if c := conflict(locks, want, nil); c != nil {
			return nil, errnof(syscall.EAGAIN, "inode %d: range %d-%d locked by pid %d", r.Ino, c.Start, c.End, c.Pid)
		}
	}
	locks = cutOwner(locks, want)
	if want.Type != stratapb.LockType_LOCK_TYPE_UNLOCK {
		locks = append(locks, want)
	}
	t.set(r.Ino, locks)
	return &stratapb.SetLockResponse{}, nil
}

func (s *state) releaseLocks(now int64, r *stratapb.ReleaseLocksRequest) (*stratapb.ReleaseLocksResponse, error) {
	t := s.locks
	t.sweep(now)
	t.set(r.Ino, slices.DeleteFunc(slices.Clone(t.byIno[r.Ino]), func(l *stratapb.FileLock) bool {
		return l.Session == r.Session && l.Owner == r.Owner &&
			(r.Kind == stratapb.LockKind_LOCK_KIND_UNSPECIFIED || l.Kind == r.Kind)
	}))
	return &stratapb.ReleaseLocksResponse{}, nil
}

// getLock returns a live lock that conflicts with want, or nil.
func (s *state) getLock(now int64, ino uint64, want *stratapb.FileLock) (*stratapb.FileLock, error) {
	w, err := checkLock(want)
	if err != nil {
		return nil, err
	}
	if w.Type == stratapb.LockType_LOCK_TYPE_UNLOCK {
		return nil, nil
	}
	alive := func(session string) bool { return s.locks.sessions[session] >= now }
	return conflict(s.locks.byIno[ino], w, alive), nil
}

// conflict finds a lock of another owner, of the same kind (flock and
// POSIX locks do not see each other, as on Linux), overlapping want's
// range, where one of the two is a write lock. alive, when given, filters
// out locks of lapsed sessions.
func conflict(locks []*stratapb.FileLock, want *stratapb.FileLock, alive func(string) bool) *stratapb.FileLock {
	for _, l := range locks {
		if l.Kind != want.Kind || (l.Session == want.Session && l.Owner == want.Owner) {
			continue
		}
		if l.Start > want.End || want.Start > l.End {
			continue
		}
		if l.Type != stratapb.LockType_LOCK_TYPE_WRITE && want.Type != stratapb.LockType_LOCK_TYPE_WRITE {
			continue
		}
		if alive != nil && !alive(l.Session) {
			continue
		}
		return l
	}
	return nil
}

// cutOwner removes want's range from the locks of want's owner and kind,
// splitting a lock that reaches past either end, and returns a new slice.
func cutOwner(locks []*stratapb.FileLock, want *stratapb.FileLock) []*stratapb.FileLock {
	out := make([]*stratapb.FileLock, 0, len(locks)+1)
	for _, l := range locks {
		mine := l.Session == want.Session && l.Owner == want.Owner && l.Kind == want.Kind
		if !mine || l.Start > want.End || want.Start > l.End {
			out = append(out, l)
			continue
		}
		if l.Start < want.Start {
			out = append(out, withRange(l, l.Start, want.Start-1))
		}
		if l.End > want.End {
			out = append(out, withRange(l, want.End+1, l.End))
		}
	}
	return out
}

func withRange(l *stratapb.FileLock, start, end uint64) *stratapb.FileLock {
	return &stratapb.FileLock{Session: l.Session, Owner: l.Owner, Kind: l.Kind, Type: l.Type, Start: start, End: end, Pid: l.Pid}
}

// lockRecords are the snapshot records of the lock table.
func (t lockTable) records() []*stratapb.SnapshotRecord {
	var out []*stratapb.SnapshotRecord
	for s, exp := range t.sessions {
		out = append(out, &stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_LockSession{
			LockSession: &stratapb.SnapshotLockSession{Session: s, ExpiresNs: exp}}})
	}
	for ino, locks := range t.byIno {
		for _, l := range locks {
			out = append(out, &stratapb.SnapshotRecord{Rec: &stratapb.SnapshotRecord_Lock{
				Lock: &stratapb.SnapshotLock{Ino: ino, Lock: l}}})
		}
	}
	return out
}
