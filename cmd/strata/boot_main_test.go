package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"
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
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// asStrata is the environment that makes the test binary act as strata.
const asStrata = "STRATA_TEST_AS_STRATA=1"
