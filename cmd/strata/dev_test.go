package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDevRestartFindsData: `strata dev` stopped and started again on the
// same directory serves every file it had.
func TestDevRestartFindsData(t *testing.T) {
	dir := t.TempDir()
	// The dev cluster makes its own CA on first start; the CLI finds its
	// client certificate there (as `make dev` users get it by default).
	t.Setenv("STRATA_TLS_DIR", devTLSDir(dir))
	start := func() *devCluster {
		o := devOptions{dir: dir, basePort: 61400, metas: 3, datas: 6, fsync: true, vip: devServiceIP}
		dc := &devCluster{o: o, log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry()}
		t.Cleanup(dc.stop)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := dc.start(ctx); err != nil {
			t.Fatal(err)
		}
		return dc
	}
	dc := start()
	meta := strings.Join(dc.metaAddrs(), ",")
	t.Setenv("STRATA_LOG_LEVEL", "error")
	data := randomBytes(5*mib+3, 5)
	src := filepath.Join(t.TempDir(), "src")
	os.WriteFile(src, data, 0o644)
	for _, args := range [][]string{{"mkdir", "--meta", meta, "-p", "/a/b"}, {"put", "--meta", meta, src, "/a/b/f"}} {
		if code := run(context.Background(), args, io.Discard, os.Stderr); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
	}
	dc.stop()
	dc = start()
	var out bytes.Buffer
	if code := run(context.Background(), []string{"get", "--meta", meta, "/a/b/f", "-"}, &out, os.Stderr); code != 0 {
		t.Fatalf("get after restart: exit %d", code)
	}
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("after restart: %d bytes, want %d identical", out.Len(), len(data))
	}
	// Through the service IP alone, which the leader serves on. A leader
	// elected moments ago has not heard every heartbeat yet (each
	// dataserver finds a new leader within a second or two): wait for it.
	var st bytes.Buffer
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st.Reset()
		run(context.Background(), []string{"status", "--meta", devServiceIP + ":61400"}, &st, os.Stderr)
		if strings.Contains(st.String(), "6 of 6 dataservers up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status 30 s after restart:\n%s", st.String())
		}
	}
}

// TestDevFlagErrors: bad flags of strata dev are refused before anything
// starts.
func TestDevFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"dev", "--metas", "2"},
		{"dev", "--datas", "0"},
		{"dev", "--base-port", "80"},
		{"dev", "extra"},
		{"dev", "--log-level", "loud"},
	} {
		var errb bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &errb); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, errb.String())
		}
	}
}
