package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// testTLSDir holds ca.crt and a certificate for every role, made once for
// this test binary. TestMain points STRATA_TLS_DIR at it, so that every
// CLI command the tests run (in process or as child processes, which
// inherit the environment) uses mutual TLS without a flag, and the tests'
// in-process clusters (testcluster.Options{TLSDir: testTLSDir, TLSDir: testTLSDir}) trust the
// same CA. Tests of `strata dev` set STRATA_TLS_DIR to the dev cluster's
// own directory instead.
var testTLSDir string

func setupTestTLS() (cleanup func()) {
	dir, err := os.MkdirTemp("", "strata-cmd-tls-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test TLS:", err)
		os.Exit(1)
	}
	testTLSDir = filepath.Join(dir, "tls")
	if err := testcluster.MakeTLSDir(filepath.Join(dir, "ca"), testTLSDir); err != nil {
		fmt.Fprintln(os.Stderr, "test TLS:", err)
		os.Exit(1)
	}
	os.Setenv("STRATA_TLS_DIR", testTLSDir)
	return func() { os.RemoveAll(dir) }
}

// testClientTLS is the client identity of testTLSDir, for tests' own
// clients of processes started with STRATA_TLS_DIR.
func testClientTLS(t testing.TB) *pki.Identity {
	t.Helper()
	id, err := pki.Load(testTLSDir, pki.RoleClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
