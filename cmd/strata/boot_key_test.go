package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBMCKeyCommands: keygen, and the clear errors of a missing or wrong
// key at the commands that need it (a power action, the daemon's start),
// rotation with rekey, and show never printing the password.
func TestBMCKeyCommands(t *testing.T) {
	r := newBootRig(t, 0)
	t.Setenv("STRATA_DEV_DIR", t.TempDir()) // no dev cluster key to fall back on
	mustCLIRun(t, "group", "create", "g", "--meta", r.meta, "--image", "alpha:1")
	r.addNode("k1", "02:00:00:00:05:01", "g")
	oldKey := os.Getenv("STRATA_BMC_KEY_FILE")
	newKey := filepath.Join(r.dir, "new.key")

	out := mustCLIRun(t, "bootctl", "keygen", "--out", newKey)
	if st, err := os.Stat(newKey); err != nil || st.Mode().Perm() != 0o600 || !strings.Contains(out, "written to") {
		t.Fatalf("keygen: %s %v %v", out, st, err)
	}
	if code, _, errOut := cliRun("bootctl", "keygen", "--out", newKey); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("keygen over an existing key: exit %d %s", code, errOut)
	}
	check := func(what string, wantCode int, want string, args ...string) {
		t.Helper()
		code, out, errOut := cliRun(args...)
		if code != wantCode || !strings.Contains(out+errOut, want) {
			t.Errorf("%s: exit %d, want %d with %q:\n%s\n%s", what, code, wantCode, want, out, errOut)
		}
	}
	check("power with another key", 1, "encrypted with another key", "node", "power", "status", "k1", "--meta", r.meta, "--bmc-key-file", newKey)
	check("power without a key", 1, "no key was given", "node", "power", "status", "k1", "--meta", r.meta, "--bmc-key-file", "")
	check("node add without a key", 1, "no key was given", "node", "add", "k2", "--meta", r.meta, "--mac", "02:00:00:00:05:02",
		"--bmc", "127.0.0.1:9", "--bmc-password", "x", "--bmc-key-file", "")
	check("daemon with another key", 1, "encrypted with another key", "bootctl", "--meta", r.meta, "--listen", "127.0.0.1:0", "--bmc-key-file", newKey)
	check("listing (needs no key)", 0, "k1", "node", "list", "--meta", r.meta)

	check("rekey", 0, "1 BMC passwords re-encrypted", "bootctl", "rekey", "--meta", r.meta, "--old-key-file", oldKey, "--bmc-key-file", newKey)
	check("power with the new key", 0, "ok", "node", "power", "status", "k1", "--meta", r.meta, "--bmc-key-file", newKey)
	check("power with the old key", 1, "encrypted with another key", "node", "power", "status", "k1", "--meta", r.meta, "--bmc-key-file", oldKey)
	out = mustCLIRun(t, "node", "show", "k1", "--meta", r.meta)
	if !strings.Contains(out, "password=(encrypted)") || strings.Contains(out, r.bmcs["k1"].Password) {
		t.Errorf("node show:\n%s", out)
	}
}
