package netns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// build is the strata binary built for this test binary run: building is
// the slow part of a multi-host test, and every test can share the result.
var build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// StrataBinary builds ./cmd/strata once per test binary run (with the race
// detector if the tests run with it) and returns the path of the binary.
// Call RemoveBuilds from TestMain to delete it afterwards.
func StrataBinary(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.path, build.err = buildStrata() })
	if build.err != nil {
		t.Fatalf("netns: %v", build.err)
	}
	return build.path
}

// RemoveBuilds deletes what StrataBinary built. Call it after m.Run.
func RemoveBuilds() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
}

func buildStrata() (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "/" {
		return "", fmt.Errorf("go env GOMOD: not inside a module (%q)", gomod)
	}
	if build.dir, err = os.MkdirTemp("", "strata-netns-"); err != nil {
		return "", fmt.Errorf("build strata: %w", err)
	}
	bin := filepath.Join(build.dir, "strata")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/strata")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s ./cmd/strata in %s: %w\n%s", strings.Join(args, " "), root, err, out)
	}
	return bin, nil
}
