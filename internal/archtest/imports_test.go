// Package archtest keeps the dependency direction of DESIGN.md as a test:
// cmd -> fuse, bootctl, imagestore -> client -> proto; the servers never
// import client, fuse or cmd, and nothing imports cmd.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/strata-hpc/strata"

// deps lists every package pkg depends on, transitively.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", module+"/"+pkg).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %s: %v\n%s", pkg, err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestForbiddenImports(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"metaserver", []string{"client", "fuse", "cmd", "dataserver", "imagestore", "bootctl"}},
		{"dataserver", []string{"client", "fuse", "cmd", "metaserver", "imagestore", "bootctl"}},
		{"client", []string{"fuse", "cmd", "metaserver", "dataserver", "imagestore", "bootctl"}},
		{"proto/stratapb", []string{"client", "fuse", "cmd", "metaserver", "dataserver", "internal"}},
		{"bootctl", []string{"fuse", "cmd", "metaserver", "dataserver", "imagestore"}},
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			for _, f := range r.forbidden {
				if d == module+"/"+f || strings.HasPrefix(d, module+"/"+f+"/") {
					t.Errorf("%s imports %s (forbidden: dependencies point one way, see DESIGN.md)", r.pkg, d)
				}
			}
		}
	}
}

// TestNothingImportsCmd: cmd is the top; no package may depend on it.
func TestNothingImportsCmd(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		for _, imp := range strings.Fields(imports) {
			if strings.HasPrefix(imp, module+"/cmd") && !strings.HasPrefix(pkg, module+"/cmd") {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
}
