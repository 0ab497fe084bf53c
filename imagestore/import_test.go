package imagestore

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// TestImportKeepsEverything: a directory and the same tree as a plain,
// gzip and zstd tarball import to identical images: owners, modes
// (setuid, sticky), device nodes, FIFOs, symlinks, hard links, xattrs and
// the file capability; each image is frozen.
func TestImportKeepsEverything(t *testing.T) {
	s, cl := newStore(t)
	src := makeRootfs(t)
	want := describeLocal(t, src)
	for _, must := range []string{"security.capability", "char 0666 0:0 1,3", "block 0660 0:6 7,0", "fifo", "link-of=usr/bin/ping", "04755", "01777", "-> /usr/bin/su", "42 size="} {
		if !strings.Contains(want, must) {
			t.Fatalf("the source tree lacks %q:\n%s", must, want)
		}
	}
	sources := map[string]string{
		"test:dir":  src,
		"test:tar":  tarball(t, src, ""),
		"test:gz":   tarball(t, src, "gzip"),
		"test:zstd": tarball(t, src, "zstd"),
	}
	for ref, p := range sources {
		res := importPath(t, s, ref, p)
		if res.Entries == 0 || res.Bytes == 0 {
			t.Errorf("%s: result %+v", ref, res)
		}
		got := describeStrata(t, cl, imagePath(mustRef(t, ref))+"/rootfs")
		if got != want {
			t.Errorf("%s differs from the source\n--- image:\n%s\n--- source:\n%s", ref, got, want)
		}
	}
	// The progress bar, on a tarball (whose size is known).
	var bar bytes.Buffer
	tb, err := OpenSource(tarball(t, randomTree(t, 10, 50000, nil), "gzip"))
	must(t, err)
	_, err = s.Import(context.Background(), mustRef(t, "test:progress"), tb, ImportOptions{Progress: &bar})
	tb.Close()
	must(t, err)
	if !strings.Contains(bar.String(), "100%") || !strings.Contains(bar.String(), " files, ") {
		t.Errorf("progress bar: %q", bar.String())
	}
	sources["test:progress"] = ""
	// The same tarball again: its tree is shared by digest, nothing written.
	again := importPath(t, s, "test:gz-again", sources["test:gz"])
	if again.SameAs != "test:gz" || again.Stored != 0 || again.Digest == "" {
		t.Errorf("re-import of the same tarball: %+v", again)
	}
	if got := describeStrata(t, cl, imagePath(mustRef(t, "test:gz-again"))+"/rootfs"); got != want {
		t.Errorf("re-imported image differs:\n%s", got)
	}
	sources["test:gz-again"] = ""
	imgs, err := s.List(context.Background())
	must(t, err)
	if len(imgs) != len(sources) {
		t.Fatalf("list: %d images, want %d: %+v", len(imgs), len(sources), imgs)
	}
	for _, img := range imgs {
		if !img.Complete || img.Record.Entries == 0 || img.Record.Source == "" {
			t.Errorf("image %s: %+v", img.Ref, img)
		}
	}
	// Frozen: no change gets in.
	a, err := s.Resolve(context.Background(), mustRef(t, "test:dir"))
	must(t, err)
	if _, err := cl.MkdirAt(context.Background(), a.GetIno(), "new", 0o755, rootOwner); err == nil {
		t.Error("mkdir inside an image succeeded")
	}
	// A second import of the same tag is refused, the image untouched.
	source, err := OpenSource(src)
	must(t, err)
	defer source.Close()
	if _, err := s.Import(context.Background(), mustRef(t, "test:dir"), source, ImportOptions{}); !errors.Is(err, ErrExists) {
		t.Errorf("import over an existing tag: %v, want ErrExists", err)
	}
}
