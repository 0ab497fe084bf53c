package metaserver

import (
	"bytes"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

const (
	rd = stratapb.LockType_LOCK_TYPE_READ
	wr = stratapb.LockType_LOCK_TYPE_WRITE
	un = stratapb.LockType_LOCK_TYPE_UNLOCK
	px = stratapb.LockKind_LOCK_KIND_POSIX
	fl = stratapb.LockKind_LOCK_KIND_FLOCK
)

func (tf *testFSM) keepAlive(session string, ttl time.Duration) *stratapb.LockKeepAliveResponse {
	tf.t.Helper()
	resp, err := tf.apply(CmdLockKeepAlive, nil, &stratapb.LockKeepAliveRequest{Session: session, TtlMs: ttl.Milliseconds()})
	if err != nil {
		tf.t.Fatalf("keepalive %s: %v", session, err)
	}
	return resp.(*stratapb.LockKeepAliveResponse)
}

func (tf *testFSM) lock(ino uint64, session string, owner uint64, kind stratapb.LockKind, typ stratapb.LockType, start, end uint64) error {
	_, err := tf.apply(CmdSetLock, nil, &stratapb.SetLockRequest{Ino: ino, Lock: &stratapb.FileLock{
		Session: session, Owner: owner, Kind: kind, Type: typ, Start: start, End: end, Pid: uint32(owner)}})
	return err
}

func (tf *testFSM) mustLock(ino uint64, session string, owner uint64, kind stratapb.LockKind, typ stratapb.LockType, start, end uint64) {
	tf.t.Helper()
	if err := tf.lock(ino, session, owner, kind, typ, start, end); err != nil {
		tf.t.Fatalf("lock %s/%d %v %v %d-%d: %v", session, owner, kind, typ, start, end, err)
	}
}

// TestLockTable: POSIX ranges exclude only where they overlap and one is a
// write lock; an owner's own locks are replaced and split; flock and POSIX
// locks are separate; a lapsed session's locks are gone.
func TestLockTable(t *testing.T) {
	tf := newTestFSM(t)
	ino := tf.create(rootIno, "f")
	tf.keepAlive("A", 10*time.Second)
	tf.keepAlive("B", 10*time.Second)

	tf.mustLock(ino, "A", 1, px, wr, 0, 99)
	wantErrno(t, tf.lock(ino, "B", 1, px, rd, 50, 50), syscall.EAGAIN)
	tf.mustLock(ino, "B", 1, px, wr, 100, 199) // adjacent, no overlap
	tf.mustLock(ino, "A", 2, px, rd, 300, 400)
	tf.mustLock(ino, "B", 1, px, rd, 350, 450) // two readers share

	// Unlocking the middle of A's range splits it: 40-59 is free, the
	// rest still A's.
	tf.mustLock(ino, "A", 1, px, un, 40, 59)
	tf.mustLock(ino, "B", 2, px, wr, 40, 59)
	wantErrno(t, tf.lock(ino, "B", 2, px, wr, 39, 39), syscall.EAGAIN)
	wantErrno(t, tf.lock(ino, "B", 2, px, wr, 60, 60), syscall.EAGAIN)

	// The same owner changes its own lock's type in place.
	tf.mustLock(ino, "A", 1, px, rd, 0, 39)
	tf.mustLock(ino, "B", 3, px, rd, 0, 10)

	// flock does not see POSIX locks; two flocks exclude.
	tf.mustLock(ino, "A", 9, fl, wr, 0, 0)
	wantErrno(t, tf.lock(ino, "B", 9, fl, rd, 0, 0), syscall.EAGAIN)

	// Release on close: A's owner 9 closes its file.
	if _, err := tf.apply(CmdReleaseLocks, nil, &stratapb.ReleaseLocksRequest{Ino: ino, Session: "A", Owner: 9, Kind: fl}); err != nil {
		t.Fatal(err)
	}
	tf.mustLock(ino, "B", 9, fl, rd, 0, 0)

	// GetLock reports the holder.
	c, err := tf.f.st.getLock(tf.now, ino, &stratapb.FileLock{Session: "B", Owner: 7, Kind: px, Type: wr, Start: 60, End: 60})
	if err != nil || c == nil || c.Session != "A" || c.Owner != 1 {
		t.Fatalf("getLock: %v %v, want A/1", c, err)
	}

	// A's lease lapses: all its locks go at the next command.
	tf.now += (11 * time.Second).Nanoseconds()
	tf.keepAlive("B", 10*time.Second)
	tf.mustLock(ino, "B", 7, px, wr, 60, 99)
	wantErrno(t, tf.lock(ino, "A", 1, px, wr, 0, 0), syscall.ENOLCK)
	if tf.keepAlive("A", 10*time.Second).Renewed {
		t.Fatal("a lapsed session was renewed, not restarted")
	}
	wantErrno(t, tf.lock(ino, "A", 1, px, wr, 60, 60), syscall.EAGAIN)

	// Bad input.
	wantErrno(t, tf.lock(ino, "A", 1, px, wr, 10, 5), syscall.EINVAL)
	wantErrno(t, tf.lock(ino, "A", 1, 0, wr, 0, 5), syscall.EINVAL)
	wantErrno(t, tf.lock(ino, "", 1, px, wr, 0, 5), syscall.EINVAL)
	wantErrno(t, tf.lock(9999, "A", 1, px, wr, 0, 5), syscall.ENOENT)
	if _, err := tf.apply(CmdLockKeepAlive, nil, &stratapb.LockKeepAliveRequest{Session: "C", TtlMs: 1}); err == nil {
		t.Fatal("a 1 ms lease was accepted")
	}
}

// TestLockTableSnapshot: locks and sessions survive a snapshot and
// restore (what a new leader or a restarted voter starts from).
func TestLockTableSnapshot(t *testing.T) {
	tf := newTestFSM(t)
	ino := tf.create(rootIno, "f")
	tf.keepAlive("A", 10*time.Second)
	tf.keepAlive("B", 10*time.Second)
	tf.mustLock(ino, "A", 1, px, wr, 0, 9)
	tf.mustLock(ino, "A", 2, fl, rd, 0, 0)
	snap, err := tf.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	f2 := newTestFSM(t)
	f2.now = tf.now
	if err := f2.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, f2.lock(ino, "B", 1, px, rd, 5, 5), syscall.EAGAIN)
	wantErrno(t, f2.lock(ino, "B", 1, fl, wr, 0, 0), syscall.EAGAIN)
	f2.mustLock(ino, "B", 1, px, rd, 10, 10)
}

// TestSetgidDirectory: entries made in a set-group-ID directory get its
// group; subdirectories also get the bit.
func TestSetgidDirectory(t *testing.T) {
	tf := newTestFSM(t)
	resp, err := tf.apply(CmdMkdir, nil, &stratapb.MkdirRequest{Parent: rootIno, Name: "proj", Mode: 0o2775, Uid: 10, Gid: 500})
	if err != nil {
		t.Fatal(err)
	}
	proj := resp.(*stratapb.MkdirResponse).Attr.Ino
	f, err := tf.apply(CmdCreate, nil, &stratapb.CreateRequest{Parent: proj, Name: "f", Mode: 0o644, Uid: 20, Gid: 20})
	if err != nil || f.(*stratapb.CreateResponse).Attr.Gid != 500 {
		t.Fatalf("file in setgid dir: %v %v, want gid 500", f, err)
	}
	sub, err := tf.apply(CmdMkdir, nil, &stratapb.MkdirRequest{Parent: proj, Name: "sub", Mode: 0o755, Uid: 20, Gid: 20})
	if a := sub.(*stratapb.MkdirResponse).Attr; err != nil || a.Gid != 500 || a.Mode&syscall.S_ISGID == 0 {
		t.Fatalf("subdir of setgid dir: %v %v, want gid 500 and the setgid bit", a, err)
	}
	ln, err := tf.apply(CmdSymlink, nil, &stratapb.SymlinkRequest{Parent: proj, Name: "ln", Target: "f", Uid: 20, Gid: 20})
	if err != nil || ln.(*stratapb.SymlinkResponse).Attr.Gid != 500 {
		t.Fatalf("symlink in setgid dir: %v %v", ln, err)
	}
	plain, err := tf.apply(CmdCreate, nil, &stratapb.CreateRequest{Parent: rootIno, Name: "g", Mode: 0o644, Uid: 20, Gid: 20})
	if err != nil || plain.(*stratapb.CreateResponse).Attr.Gid != 20 {
		t.Fatalf("file in a plain dir: %v %v, want the creator's gid", plain, err)
	}
}
