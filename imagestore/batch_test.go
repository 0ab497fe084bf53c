package imagestore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestImportManyEntriesInBatches: a tree of more entries than one import
// batch takes (and more small files than one storage group), with
// contents repeated inside a group and across groups, empty and all-zero
// files, a file larger than a chunk, and hard links whose targets were
// made in earlier batches, imports identical to the source (from a
// directory and from a tarball), each distinct content stored once.
func TestImportManyEntriesInBatches(t *testing.T) {
	s, cl := newStore(t)
	root := filepath.Join(t.TempDir(), "tree")
	const files = 400 // batches of 64 entries, groups of 16 files (below)
	for i := range files {
		p := filepath.Join(root, fmt.Sprintf("d%02d/sub%d/f%04d", i%8, i%3, i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o750))
		var data []byte
		switch {
		case i%97 == 0:
			data = nil // empty
		case i%89 == 0:
			data = make([]byte, 3000) // all zeros: a hole
		default:
			data = []byte(fmt.Sprintf("content %d\n", i%50)) // each content ~8 times
		}
		must(t, os.WriteFile(p, data, 0o640))
		must(t, os.Chown(p, i%7, i%5))
		if i%150 == 1 {
			must(t, os.Link(p, filepath.Join(root, fmt.Sprintf("late-link-%d", i))))
		}
	}
	big := make([]byte, 5<<20) // more than one chunk: stored on its own
	for i := range big {
		big[i] = byte(i * 31 / 7)
	}
	must(t, os.WriteFile(filepath.Join(root, "big"), big, 0o600))
	want := describeLocal(t, root)
	limits := ImportOptions{limits: batchLimits{batchEntries: 64, groupFiles: 16}}
	res := importWith(t, s, "many:dir", root, limits)
	if got := describeStrata(t, cl, imagePath(mustRef(t, "many:dir"))+"/rootfs"); got != want {
		t.Fatalf("image differs from the source\n--- image:\n%.3000s\n--- source:\n%.3000s", got, want)
	}
	// 50 small contents of ~12 bytes and the big file: nothing more.
	if limit := int64(len(big)) + 50*16; res.Stored > limit {
		t.Errorf("stored %d bytes, at most %d expected (dedup inside the import)", res.Stored, limit)
	}
	again := importWith(t, s, "many:tar", tarball(t, root, ""), limits)
	if again.Stored != 0 {
		t.Errorf("the same tree again as a tarball stored %d bytes", again.Stored)
	}
	if got := describeStrata(t, cl, imagePath(mustRef(t, "many:tar"))+"/rootfs"); got != want {
		t.Fatal("tarball image differs from the source")
	}
}

func importWith(t *testing.T, s *Store, ref, src string, opts ImportOptions) *ImportResult {
	t.Helper()
	source, err := OpenSource(src)
	must(t, err)
	defer source.Close()
	res, err := s.Import(context.Background(), mustRef(t, ref), source, opts)
	if err != nil {
		t.Fatalf("import %s from %s: %v", ref, src, err)
	}
	return res
}
