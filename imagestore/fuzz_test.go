package imagestore

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tarSeeds are hand-made tarballs for the fuzzers: good ones, and ones
// with every kind of trouble a hostile tarball can carry.
func tarSeeds(t *testing.T) [][]byte {
	pax := func(name string, recs map[string]string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		must(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, PAXRecords: recs, Format: tar.FormatPAX, ModTime: time.Unix(1e9, 0)}))
		_, err := tw.Write([]byte("x"))
		must(t, err)
		must(t, tw.Close())
		return buf.Bytes()
	}
	good := makeTar(t, member{name: "etc/", typ: tar.TypeDir}, member{name: "etc/passwd", typ: tar.TypeReg, data: "root:x:0:0\n"},
		member{name: "etc/l", typ: tar.TypeSymlink, link: "passwd"}, member{name: "etc/h", typ: tar.TypeLink, link: "etc/passwd"})
	return [][]byte{
		good,
		gz(t, good),
		good[:len(good)-1024],
		good[:700],
		makeTar(t, member{name: "../evil", typ: tar.TypeReg, data: "x"}),
		makeTar(t, member{name: "/etc/shadow", typ: tar.TypeReg, data: "x"}),
		makeTar(t, member{name: "a/l", typ: tar.TypeSymlink, link: "../../etc"}),
		makeTar(t, member{name: "h", typ: tar.TypeLink, link: "../outside"}),
		makeTar(t, member{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}),
		makeTar(t, member{name: strings.Repeat("a", 300), typ: tar.TypeReg}),
		pax("p", map[string]string{"SCHILY.xattr.user.a": "v", "LIBARCHIVE.xattr.user.b": "dg=="}),
		pax("p", map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 66000)}),
		pax("p", map[string]string{"path": "../../x"}),
		pax(strings.Repeat("d/", 200)+"f", nil),
		{},
		[]byte("not a tarball at all"),
	}
}

// FuzzTarImport feeds arbitrary bytes (plain, gzip or zstd) to the tarball
// reader that `strata image import` uses, and reads every entry and its
// data. It must never panic, every error must be a clear ErrBadSource, and
// whatever it yields must be safe to write: a clean relative path (no
// "..", not absolute, no NUL, components of at most 255 bytes), symlinks
// that stay inside the image, hard links naming a clean path, xattrs
// within the metadata service's limits, and exactly Size bytes of data.
func FuzzTarImport(f *testing.F) {
	for _, s := range tarSeeds(&testing.T{}) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		defer watchdog(5 * time.Second)()
		s := &tarSource{name: "fuzz"}
		err := s.openStream(bytes.NewReader(b))
		if err == nil {
			err = drainSource(t, s)
		}
		if s.dec != nil {
			s.dec.Close()
		}
		if err != nil && !errors.Is(err, ErrBadSource) {
			t.Fatalf("error is not ErrBadSource: %v", err)
		}
	})
}

// watchdog crashes the fuzz worker, with every goroutine's stack, when one
// input runs longer than d: the fuzzer then saves the input as a failure
// instead of hanging. Call the returned function to disarm it.
func watchdog(d time.Duration) func() {
	tm := time.AfterFunc(d, func() {
		buf := make([]byte, 1<<20)
		panic(fmt.Sprintf("input ran longer than %v:\n%s", d, buf[:runtime.Stack(buf, true)]))
	})
	return func() { tm.Stop() }
}

// drainSource reads every entry of src and checks it; it returns the
// source's error (nil at a clean end).
func drainSource(t *testing.T, src Source) error {
	for n := 0; n < 10000; n++ {
		e, err := src.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		checkSafeEntry(t, e)
		if e.Kind != KindRegular {
			continue
		}
		got := int64(len(e.Data))
		if e.Data == nil && e.Open != nil {
			rc, err := e.Open()
			if err != nil {
				return err
			}
			got, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
		if got != e.Size {
			t.Fatalf("%q: %d bytes of data, header says %d", e.Path, got, e.Size)
		}
	}
	return nil
}

func checkSafeEntry(t *testing.T, e *Entry) {
	t.Helper()
	if e.Path != "" {
		if p, err := cleanPath(e.Path); err != nil || p != e.Path {
			t.Fatalf("unsafe path %q yielded (clean %q, %v)", e.Path, p, err)
		}
	}
	switch e.Kind {
	case KindSymlink:
		if err := checkSymlink(e.Path, e.Link); err != nil {
			t.Fatalf("escaping symlink yielded: %v", err)
		}
	case KindHardlink:
		if p, err := cleanPath(e.Link); err != nil || p != e.Link || p == "" {
			t.Fatalf("hard link %q -> %q yielded", e.Path, e.Link)
		}
	}
	for name, v := range e.Xattrs {
		if err := checkXattr(e.Path, name, v); err != nil {
			t.Fatalf("xattr beyond the limits yielded: %v", err)
		}
	}
}

// FuzzImagePaths checks the path rules of image members against a model:
// a path cleanPath accepts, resolved inside a directory, stays inside it;
// a symlink checkSymlink accepts, resolved lexically from where it is,
// stays inside the image root.
func FuzzImagePaths(f *testing.F) {
	for _, s := range [][2]string{{"a/b", "../c"}, {"../x", "y"}, {"/abs", "/etc"}, {"a/./b/", "../../.."}, {"a\x00b", "x\x00"}, {strings.Repeat("z", 256), "."}, {".", ""}, {"a//b", "b/../../c"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, target string) {
		p, err := cleanPath(name)
		if err != nil {
			if !errors.Is(err, ErrBadSource) {
				t.Fatalf("cleanPath error is not ErrBadSource: %v", err)
			}
			return
		}
		root := "/root/image"
		abs := filepath.Join(root, p)
		if abs != root && !strings.HasPrefix(abs, root+"/") {
			t.Fatalf("cleanPath(%q) = %q escapes the root", name, p)
		}
		if strings.IndexByte(p, 0) >= 0 || strings.HasPrefix(p, "/") {
			t.Fatalf("cleanPath(%q) = %q", name, p)
		}
		if p == "" || checkSymlink(p, target) != nil || strings.HasPrefix(target, "/") {
			return
		}
		res := filepath.Join(root, filepath.Dir(p), target)
		if res != root && !strings.HasPrefix(res, root+"/") {
			t.Fatalf("symlink %q -> %q accepted but resolves to %q, outside %s", p, target, res, root)
		}
	})
}

// FuzzImageRef: whatever ParseRef and CheckOverlayName accept is safe as a
// directory name, on a kernel command line and in a URL.
func FuzzImageRef(f *testing.F) {
	for _, s := range []string{"debian:12", "a:b:c", ":x", "x:", "../x:1", "a b:1", "-rf:1", strings.Repeat("n", 129) + ":1", "ü:1", "a\nb:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(part string) {
			if part == "" || len(part) > maxNameLen || part[0] == '.' || part[0] == '-' || strings.ContainsAny(part, "/ \t\n\x00:=\"'$&;") {
				t.Fatalf("unsafe name part %q accepted", part)
			}
		}
		if r, err := ParseRef(s); err == nil {
			check(r.Name)
			check(r.Tag)
		} else if !errors.Is(err, ErrBadName) {
			t.Fatalf("ParseRef error is not ErrBadName: %v", err)
		}
		if CheckOverlayName(s) == nil {
			check(s)
		}
	})
}

// FuzzOverlayState feeds arbitrary bytes to the push state file a push
// reads from the node's disk (DIR/.strata-overlay.json): a damaged one is
// ignored (the push then compares everything), never a crash.
func FuzzOverlayState(f *testing.F) {
	f.Add([]byte(`{"overlay":"o","node":"n1","generation":"g","ctimes":{"a":1,"../b":2}}`))
	f.Add([]byte(`{"ctimes":null}`))
	f.Add([]byte(`{"ctimes":{"a":"x"}}`))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		st := loadState(dir)
		if st == nil {
			return
		}
		// A state that loaded is used only as a hint keyed by path; it
		// must save back as it came.
		if err := saveState(dir, st); err != nil {
			t.Fatal(err)
		}
		if again := loadState(dir); again == nil || again.Generation != st.Generation || len(again.Ctimes) != len(st.Ctimes) {
			t.Fatalf("state does not round-trip: %+v vs %+v", st, again)
		}
	})
}
