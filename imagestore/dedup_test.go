package imagestore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// randomTree writes n files of size bytes each; files whose index is in
// differ get content seeded differently, so two trees made with the same
// seed share every other file.
func randomTree(t *testing.T, n, size int, differ map[int]bool) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	for i := 0; i < n; i++ {
		seed := uint64(i)
		if differ[i] {
			seed += 1 << 32
		}
		rng := rand.New(rand.NewPCG(seed, 7))
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		p := filepath.Join(root, fmt.Sprintf("d%d/f%03d", i%5, i))
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, b, 0o644))
	}
	return root
}

// TestDedupAcrossImages: a second image sharing 90% of its files with the
// first stores at most 15% of its size; re-importing the same content
// stores nothing; show reports what is shared; tag shares everything;
// removing images frees only what nothing else holds.
func TestDedupAcrossImages(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	const files, size = 40, 96 << 10
	a := randomTree(t, files, size, nil)
	differ := map[int]bool{}
	for i := 0; i < files/10; i++ {
		differ[i*10+3] = true
	}
	b := randomTree(t, files, size, differ)

	first := importPath(t, s, "os:a", a)
	if first.Stored < first.Bytes {
		t.Errorf("first import stored %d of %d bytes: nothing should have been there before", first.Stored, first.Bytes)
	}
	second := importPath(t, s, "os:b", b)
	if limit := second.Bytes * 15 / 100; second.Stored > limit {
		t.Errorf("second import stored %d bytes of %d (limit 15%%: %d)", second.Stored, second.Bytes, limit)
	}
	again := importPath(t, s, "os:a-again", a)
	if again.Stored != 0 {
		t.Errorf("re-import of the same tree stored %d bytes", again.Stored)
	}
	t.Logf("logical %d; stored: first %d, 90%%-shared %d, same %d", second.Bytes, first.Stored, second.Stored, again.Stored)

	u, err := s.Usage(ctx, mustRef(t, "os:b"))
	must(t, err)
	if u.LogicalBytes != uint64(files*size) || u.SharedLogicalBytes != uint64((files-len(differ))*size) {
		t.Errorf("usage of os:b: %+v, want logical %d, shared %d", u, files*size, (files-len(differ))*size)
	}

	must(t, s.Tag(ctx, mustRef(t, "os:b"), mustRef(t, "os:b-copy")))
	if err := s.Tag(ctx, mustRef(t, "os:a"), mustRef(t, "os:b-copy")); !errors.Is(err, ErrExists) {
		t.Errorf("tag over an existing image: %v", err)
	}
	for _, r := range []string{"os:a", "os:a-again", "os:b"} {
		must(t, s.Remove(ctx, mustRef(t, r)))
	}
	if err := s.Remove(ctx, mustRef(t, "os:b")); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
	u, err = s.Usage(ctx, mustRef(t, "os:b-copy"))
	must(t, err)
	if u.LogicalBytes != uint64(files*size) || u.SharedLogicalBytes != 0 {
		t.Errorf("usage of the last copy: %+v, want nothing shared", u)
	}
	imgs, err := s.List(ctx)
	must(t, err)
	if len(imgs) != 1 || imgs[0].Ref.String() != "os:b-copy" || !imgs[0].Complete {
		t.Errorf("list after removals: %+v", imgs)
	}
}
