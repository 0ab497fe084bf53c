package fuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// TestMain fails the run if any test left a Strata mount behind: a stale
// FUSE mount breaks every later test (and the machine's df) until someone
// unmounts it by hand.
// ourMounts holds the mount points this test process made: the leftover
// check must not touch mounts of other test binaries running beside it.
var ourMounts sync.Map

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == lockHelperArg {
		os.Exit(lockHelper(os.Args[2:]))
	}
	code := m.Run()
	if left := ourLeftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: strata mounts left behind: %v\n", left)
		for _, mp := range left {
			exec.Command("fusermount3", "-uz", mp).Run() // don't poison the next run
		}
		code = 1
	}
	os.Exit(code)
}

// ourLeftovers lists the mounts this process made that are still mounted.
func ourLeftovers() []string {
	var out []string
	for _, mp := range strataMounts() {
		if _, ok := ourMounts.Load(mp); ok {
			out = append(out, mp)
		}
	}
	return out
}

// strataMounts lists the mount points of Strata FUSE mounts.
func strataMounts() []string {
	ms, err := mounts()
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, m := range ms {
		if m.FSType == "fuse.strata" || strings.HasPrefix(m.Source, "strata") && strings.HasPrefix(m.FSType, "fuse") {
			out = append(out, m.Point)
		}
	}
	return out
}

// needFUSE skips a test that cannot mount here.
func needFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE tests run as root (DESIGN.md, Testing)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// newCluster starts a test cluster; policy nil means the default 4+2 with
// 4 MiB chunks.
func newCluster(t *testing.T, policy *stratapb.StripePolicy) *testcluster.Cluster {
	t.Helper()
	needFUSE(t)
	return testcluster.New(t, testcluster.Options{Meta: 3, Data: 6, Policy: policy})
}

// smallChunks is a stripe policy with 64 KiB chunks, so that tests cross
// chunk boundaries, and rewrite chunks in part, with small files.
func smallChunks() *stratapb.StripePolicy {
	return &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 64 << 10, SmallThreshold: 16 << 10}
}

func newClient(t *testing.T, c *testcluster.Cluster) *client.Client {
	t.Helper()
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func testLogger() *slog.Logger {
	if os.Getenv("STRATA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// mountDir makes an empty directory for a mount point that other users
// can reach (t.TempDir's parents are private), removed at the end.
func mountDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-fuse-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return mp
}

// mount mounts a new client of c at a new directory and unmounts it when
// the test ends, passed or failed. opts nil means DefaultOptions.
func mount(t *testing.T, c *testcluster.Cluster, opts *Options) string {
	t.Helper()
	cl := newClient(t, c)
	mp := mountDir(t)
	o := DefaultOptions()
	if opts != nil {
		o = *opts
	}
	o.Logger = testLogger()
	o.Debug = os.Getenv("STRATA_FUSE_DEBUG") != ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fsys, err := Mount(ctx, cl, mp, o)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	ourMounts.Store(fsys.Mountpoint(), true)
	t.Cleanup(func() { unmount(t, fsys) })
	return mp
}

// unmount retries while the mount is busy (a descriptor a failed test
// left open is closed by the garbage collector at the latest), then
// detaches it lazily so that no mount outlives the test.
func unmount(t *testing.T, fsys *FS) {
	var err error
	for try := 0; try < 50; try++ {
		if err = fsys.Unmount(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("unmount %s: %v; detaching it lazily", fsys.Mountpoint(), err)
	if out, err := exec.Command("fusermount3", "-uz", fsys.Mountpoint()).CombinedOutput(); err != nil {
		t.Errorf("fusermount3 -uz: %v: %s", err, out)
	}
}

// errnoOf returns the errno inside err, 0 for nil, or EIO for an error
// without one (a test then shows the error itself).
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}
