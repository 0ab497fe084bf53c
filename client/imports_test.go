package client

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestForbiddenImports keeps the dependency rule of DESIGN.md: the client
// talks to the servers only over gRPC, and nothing below the CLI and FUSE
// imports them.
func TestForbiddenImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{"/metaserver", "/dataserver", "/cmd/", "/fuse", "/imagestore", "/bootctl", "/internal/testcluster"}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if strings.HasPrefix(path, "github.com/strata-hpc/strata") && strings.Contains(path, bad) {
					t.Errorf("%s imports %s", f, path)
				}
			}
		}
	}
}
