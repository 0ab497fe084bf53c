package main

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
)

// TestMain lets the test binary stand in for the strata binary: with
// STRATA_TEST_AS_STRATA=1 it runs the command line it was given, so that
// simulated BMCs can power on real `strata boot-agent` and `strata meta`
// processes (and the agent its `strata mount`) built from the code under
// test, without a separate go build.
func TestMain(m *testing.M) {
	if os.Getenv("STRATA_TEST_AS_STRATA") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	cleanup := setupTestTLS()
	// Keep the CLI's audit records (node, group, power commands) out of
	// the home directory of whoever runs the tests.
	if os.Getenv("STRATA_AUDIT_LOG") == "" {
		dir, err := os.MkdirTemp("", "strata-test-audit-")
		if err == nil {
			os.Setenv("STRATA_AUDIT_LOG", dir+"/audit.log")
		}
		code := m.Run()
		os.RemoveAll(dir)
		cleanup()
		os.Exit(code)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// asStrata is the environment that makes the test binary act as strata.
const asStrata = "STRATA_TEST_AS_STRATA=1"

// useTestBMCKey writes a BMC password key for the test and points
// STRATA_BMC_KEY_FILE at it, for the CLI commands and daemons the test
// runs in-process (and the processes it starts).
func useTestBMCKey(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bmc.key")
	if _, err := bootctl.WriteKeyFile(p, false); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STRATA_BMC_KEY_FILE", p)
	return p
}

// keyedStore is the inventory of c with the test's BMC key.
func keyedStore(t testing.TB, c *client.Client) *bootctl.Store {
	t.Helper()
	st := bootctl.NewStore(c, nil)
	if err := withKey(st, os.Getenv("STRATA_BMC_KEY_FILE")); err != nil {
		t.Fatal(err)
	}
	return st
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
