package imagestore

import (
	"context"
	"errors"
	"testing"
)

// cancelAfter cancels an import after n entries, as Ctrl-C would.
type cancelAfter struct {
	Source
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Next() (*Entry, error) {
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return c.Source.Next()
}

// TestImportInterrupted: an import cut off half way leaves no image and no
// staging tree; running it again makes the whole image.
func TestImportInterrupted(t *testing.T) {
	s, cl := newStore(t)
	src := makeRootfs(t)
	want := describeLocal(t, src)
	ctx, cancel := context.WithCancel(context.Background())
	dir, err := OpenDir(src)
	must(t, err)
	_, err = s.Import(ctx, mustRef(t, "cut:1"), &cancelAfter{Source: dir, n: 12, cancel: cancel}, ImportOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted import: %v, want context.Canceled", err)
	}
	checkNothingLeft(t, s, cl)
	if _, err := s.Resolve(context.Background(), mustRef(t, "cut:1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("resolve after an interrupted import: %v", err)
	}
	importPath(t, s, "cut:1", src)
	if got := describeStrata(t, cl, imagePath(mustRef(t, "cut:1"))+"/rootfs"); got != want {
		t.Errorf("re-run import differs from the source:\n%s\n---\n%s", got, want)
	}
}

// TestImportFinishesPublication: a run cut off after the rename and
// before the freeze left a complete but unfrozen tree under the name; it
// is listed as incomplete and cannot be mounted, and the next run of the
// import freezes it.
func TestImportFinishesPublication(t *testing.T) {
	s, cl := newStore(t)
	ctx := context.Background()
	r := mustRef(t, "half:1")
	must(t, cl.MkdirAll(ctx, imagePath(r)+"/rootfs/etc", 0o755))
	imgs, err := s.List(ctx)
	must(t, err)
	if len(imgs) != 1 || imgs[0].Complete {
		t.Fatalf("list: %+v, want one incomplete image", imgs)
	}
	if _, err := s.Resolve(ctx, r); err == nil {
		t.Error("an unfrozen image resolves for mounting")
	}
	dir, err := OpenDir(t.TempDir())
	must(t, err)
	res, err := s.Import(ctx, r, dir, ImportOptions{})
	if err != nil || !res.Resumed {
		t.Fatalf("import: %+v, %v; want a resumed publication", res, err)
	}
	if _, err := s.Resolve(ctx, r); err != nil {
		t.Errorf("resolve after finishing: %v", err)
	}
}
