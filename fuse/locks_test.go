package fuse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// lockHelperArg as os.Args[1] makes the test binary a lock-taking process:
// the lock tests run several, on different mounts, as separate processes
// (POSIX locks belong to processes).
const lockHelperArg = "strata-lock-helper"

// lockHelper: flock|posix PATH r|w START LEN nb|wait. It prints "locked"
// or "busy", then holds the lock until its stdin closes.
func lockHelper(args []string) int {
	if len(args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: flock|posix PATH r|w START LEN nb|wait")
		return 2
	}
	f, err := os.OpenFile(args[1], os.O_RDWR, 0)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer f.Close()
	start, _ := strconv.ParseInt(args[3], 10, 64)
	n, _ := strconv.ParseInt(args[4], 10, 64)
	wait := args[5] == "wait"
	for {
		err = takeLock(int(f.Fd()), args[0], args[2] == "w", start, n, wait)
		if !errors.Is(err, syscall.EINTR) { // the Go runtime's signals interrupt a wait
			break
		}
	}
	switch {
	case err == nil:
		fmt.Println("locked")
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EACCES):
		fmt.Println("busy")
		return 0
	default:
		fmt.Println("error", err)
		return 1
	}
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func takeLock(fd int, kind string, write bool, start, n int64, wait bool) error {
	if kind == "flock" {
		how := syscall.LOCK_SH
		if write {
			how = syscall.LOCK_EX
		}
		if !wait {
			how |= syscall.LOCK_NB
		}
		return syscall.Flock(fd, how)
	}
	lk := syscall.Flock_t{Type: syscall.F_RDLCK, Whence: 0, Start: start, Len: n}
	if write {
		lk.Type = syscall.F_WRLCK
	}
	cmd := syscall.F_SETLK
	if wait {
		cmd = syscall.F_SETLKW
	}
	return syscall.FcntlFlock(uintptr(fd), cmd, &lk)
}

// locker is a running lock helper.
type locker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startLocker(t *testing.T, args ...string) *locker {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{lockHelperArg}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &locker{cmd: cmd, stdin: stdin, lines: make(chan string, 4)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			l.lines <- sc.Text()
		}
		close(l.lines)
	}()
	t.Cleanup(l.close)
	return l
}

// result waits up to d for the helper's answer; "" if none came.
func (l *locker) result(d time.Duration) string {
	select {
	case s := <-l.lines:
		return s
	case <-time.After(d):
		return ""
	}
}

// close closes the helper's stdin: it exits, closing the file (which
// releases its locks), and is waited for.
func (l *locker) close() {
	if l.stdin != nil {
		l.stdin.Close()
		l.stdin = nil
		l.cmd.Wait()
	}
}

// lockOnce runs a helper that asks without waiting and returns its answer.
func lockOnce(t *testing.T, args ...string) string {
	t.Helper()
	l := startLocker(t, args...)
	got := l.result(30 * time.Second)
	l.close()
	return got
}

// expectLock runs a non-blocking helper and fails unless it answers want
// (retrying for a while when want is "locked": a release on close may
// arrive just after the closing process exits).
func expectLock(t *testing.T, want string, args ...string) {
	t.Helper()
	got := ""
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got = lockOnce(t, args...); got == want || want != "locked" || time.Now().After(deadline) {
			break
		}
	}
	if got != want {
		t.Fatalf("%s: got %q, want %q", strings.Join(args, " "), got, want)
	}
}

// TestLocksAcrossMounts: flock and fcntl locks taken by processes on one
// mount exclude processes on another mount of the same cluster; POSIX
// ranges exclude only where they overlap; locks survive a metadata leader
// failover; closing the file releases them; F_SETLKW and a blocking flock
// wait until the holder on the other mount lets go.
func TestLocksAcrossMounts(t *testing.T) {
	c := newCluster(t, nil)
	a, b := mount(t, c, nil), mount(t, c, nil)
	must(t, os.WriteFile(filepath.Join(a, "f"), []byte("shared"), 0o644))
	fa, fb := filepath.Join(a, "f"), filepath.Join(b, "f")

	holdA := startLocker(t, "flock", fa, "w", "0", "0", "nb")
	if got := holdA.result(30 * time.Second); got != "locked" {
		t.Fatalf("flock on A: %q", got)
	}
	expectLock(t, "busy", "flock", fb, "w", "0", "0", "nb")
	expectLock(t, "busy", "flock", fb, "r", "0", "0", "nb")

	rangeA := startLocker(t, "posix", fa, "w", "0", "100", "nb") // bytes 0-99
	if got := rangeA.result(30 * time.Second); got != "locked" {
		t.Fatalf("fcntl on A: %q", got)
	}
	rangeB := startLocker(t, "posix", fb, "w", "100", "100", "nb") // 100-199: no overlap
	if got := rangeB.result(30 * time.Second); got != "locked" {
		t.Fatalf("fcntl of a disjoint range on B: %q", got)
	}
	expectLock(t, "busy", "posix", fb, "r", "50", "10", "nb")
	expectLock(t, "busy", "posix", fa, "r", "150", "1", "nb")

	// The locks are raft state: a new leader has them.
	old := c.WaitLeader() // not Leader(): -1 while an election runs (seen with -race on a loaded machine)
	c.KillMeta(old)
	c.WaitLeader()
	expectLock(t, "busy", "flock", fb, "w", "0", "0", "nb")
	expectLock(t, "busy", "posix", fb, "w", "99", "1", "nb")
	c.RestartMeta(old)

	// A blocking flock on B waits for A's, and gets it once A closes.
	waiter := startLocker(t, "flock", fb, "w", "0", "0", "wait")
	if got := waiter.result(700 * time.Millisecond); got != "" {
		t.Fatalf("a blocking flock on B returned %q while A holds the lock", got)
	}
	holdA.close()
	if got := waiter.result(30 * time.Second); got != "locked" {
		t.Fatalf("the blocking flock on B after A closed: %q", got)
	}
	expectLock(t, "busy", "flock", fa, "r", "0", "0", "nb")
	waiter.close()
	expectLock(t, "locked", "flock", fa, "r", "0", "0", "nb")

	// Closing the file releases a process's POSIX locks (FLUSH).
	rangeA.close()
	expectLock(t, "locked", "posix", fb, "w", "0", "100", "nb")
	// F_SETLKW on A waits for B's range.
	waitRange := startLocker(t, "posix", fa, "w", "150", "10", "wait")
	if got := waitRange.result(700 * time.Millisecond); got != "" {
		t.Fatalf("F_SETLKW on A returned %q while B holds the range", got)
	}
	rangeB.close()
	if got := waitRange.result(30 * time.Second); got != "locked" {
		t.Fatalf("F_SETLKW on A after B closed: %q", got)
	}
	waitRange.close()

	// A node that dies holding a lock: its session (opened here by hand,
	// with an 8 s lease, never renewed) stops renewing, and once the
	// lease lapses the lock is free for everyone else.
	cl := newClient(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := os.Stat(fa)
	must(t, err)
	ino := st.Sys().(*syscall.Stat_t).Ino
	if _, err := cl.LockKeepAlive(ctx, "dead-node", 8*time.Second); err != nil {
		t.Fatal(err)
	}
	dead := &stratapb.FileLock{Session: "dead-node", Owner: 1, Kind: stratapb.LockKind_LOCK_KIND_FLOCK, Type: stratapb.LockType_LOCK_TYPE_WRITE}
	must(t, cl.SetLock(ctx, ino, dead))
	expectLock(t, "busy", "flock", fb, "w", "0", "0", "nb")
	expectLock(t, "locked", "flock", fb, "w", "0", "0", "nb") // retries past the lease
}
