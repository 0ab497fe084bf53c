package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/testcluster"
)

func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE mount tests run as root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
}

// TestMountCommand: `strata mount` serves the cluster through the kernel
// until interrupted, then unmounts; `strata umount` refuses a directory
// that is not a Strata mount.
func TestMountCommand(t *testing.T) {
	requireFUSE(t)
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: 6})
	mp := t.TempDir()
	t.Setenv("STRATA_LOG_LEVEL", "error")
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	var out bytes.Buffer
	go func() {
		exited <- run(ctx, []string{"mount", "--meta", strings.Join(c.MetaAddrs(), ","), "--cache-dir", t.TempDir(), mp}, &out, os.Stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if isStrataMount(mp) {
			umount(mp, true)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !isStrataMount(mp) {
		if time.Now().After(deadline) {
			t.Fatal("mount did not appear")
		}
		time.Sleep(20 * time.Millisecond)
	}
	data := randomBytes(3*mib+5, 77)
	if err := os.WriteFile(filepath.Join(mp, "via-kernel"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	checkFile(t, c, "/via-kernel", data)
	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("strata mount exited %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("strata mount did not exit after interrupt")
	}
	if isStrataMount(mp) {
		t.Fatal("mount left behind")
	}
	if code := run(context.Background(), []string{"umount", mp}, io.Discard, io.Discard); code == 0 {
		t.Fatal("umount of a plain directory succeeded")
	}
}

// TestMountRefusesBadMountpoints: missing, not empty.
func TestMountRefusesBadMountpoints(t *testing.T) {
	requireFUSE(t)
	c := testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 1, Data: 6})
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	for _, mp := range []string{filepath.Join(t.TempDir(), "missing"), full} {
		var errb bytes.Buffer
		code := run(context.Background(), []string{"mount", "--meta", strings.Join(c.MetaAddrs(), ","), "--cache-dir", "", mp}, io.Discard, &errb)
		if code == 0 || isStrataMount(mp) {
			t.Errorf("mount on %s: exit %d", mp, code)
			umount(mp, true)
		}
		if errb.Len() == 0 {
			t.Errorf("mount on %s: no error message", mp)
		}
	}
}
