package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/strata-hpc/strata/client"
)

// member is one entry of a hand-made tarball.
type member struct {
	name, link string
	typ        byte
	data       string
}

func makeTar(t *testing.T, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: m.typ, Mode: 0o644, ModTime: time.Unix(1e9, 0), Size: int64(len(m.data))}
		if m.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if m.typ != tar.TypeReg {
			h.Size = 0
		}
		must(t, tw.WriteHeader(h))
		if m.typ == tar.TypeReg {
			_, err := tw.Write([]byte(m.data))
			must(t, err)
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func writeFile(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	must(t, os.WriteFile(p, b, 0o644))
	return p
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	must(t, err)
	must(t, zw.Close())
	return buf.Bytes()
}

// TestImportBadInput: unsafe paths, links that escape, truncated and
// corrupt archives each fail with a clear error, and leave neither an
// image nor a staging tree behind.
func TestImportBadInput(t *testing.T) {
	s, cl := newStore(t)
	big := strings.Repeat("0123456789", 200000) // 2 MB: cut inside a member
	good := makeTar(t, member{name: "etc/", typ: tar.TypeDir}, member{name: "etc/big", typ: tar.TypeReg, data: big}, member{name: "etc/after", typ: tar.TypeReg, data: "x"})
	cases := []struct {
		name, want string
		data       []byte
	}{
		{"dotdot", "'..'", makeTar(t, member{name: "../evil", typ: tar.TypeReg, data: "x"})},
		{"dotdot inside", "'..'", makeTar(t, member{name: "etc/../../evil", typ: tar.TypeReg, data: "x"})},
		{"absolute", "absolute", makeTar(t, member{name: "/etc/passwd", typ: tar.TypeReg, data: "x"})},
		{"escaping symlink", "escapes the image root", makeTar(t, member{name: "etc/l", typ: tar.TypeSymlink, link: "../../etc/shadow"})},
		{"write through symlink", "escape through it", makeTar(t, member{name: "lib", typ: tar.TypeSymlink, link: "/etc"}, member{name: "lib/passwd", typ: tar.TypeReg, data: "x"})},
		{"hard link out", "'..'", makeTar(t, member{name: "l", typ: tar.TypeLink, link: "../etc/passwd"})},
		{"hard link absolute", "absolute", makeTar(t, member{name: "l", typ: tar.TypeLink, link: "/etc/passwd"})},
		{"hard link to nothing", "not an earlier file", makeTar(t, member{name: "l", typ: tar.TypeLink, link: "missing"})},
		{"duplicate", "twice", makeTar(t, member{name: "f", typ: tar.TypeReg, data: "1"}, member{name: "f", typ: tar.TypeReg, data: "2"})},
		{"truncated", "truncated", good[:len(good)/2]},
		{"truncated gzip", "truncated", gz(t, good)[:len(gz(t, good))/2]},
		{"cut between members", "end-of-archive", makeTar(t, member{name: "d/", typ: tar.TypeDir}, member{name: "d/a", typ: tar.TypeReg, data: "a"}, member{name: "d/b", typ: tar.TypeReg, data: "b"})[:1536]},
		{"not an archive", "not a tar archive", []byte(strings.Repeat("garbage!", 200))},
	}
	for _, tc := range cases {
		src, err := OpenTar(writeFile(t, tc.data))
		if err == nil {
			_, err = s.Import(context.Background(), mustRef(t, "bad:"+strings.ReplaceAll(tc.name, " ", "-")), src, ImportOptions{})
			src.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	checkNothingLeft(t, s, cl)
}

// checkNothingLeft: no image listed, no staging tree left.
func checkNothingLeft(t *testing.T, s *Store, cl *client.Client) {
	t.Helper()
	imgs, err := s.List(context.Background())
	must(t, err)
	if len(imgs) != 0 {
		t.Errorf("images left: %+v", imgs)
	}
	ents, err := cl.ReadDir(context.Background(), StagingDir)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("staging tree left: %s", e.GetName())
	}
}

// TestParseRef: names with '/', spaces and the like are refused with a
// message that says what is wrong.
func TestParseRef(t *testing.T) {
	for _, ok := range []string{"debian:12", "ubuntu:24.04", "my-image_2:v1.0-rc1"} {
		if _, err := ParseRef(ok); err != nil {
			t.Errorf("ParseRef(%q): %v", ok, err)
		}
	}
	bad := map[string]string{
		"debian":                        "NAME:TAG",
		"a/b:1":                         "'/'",
		"a:b/c":                         "'/'",
		"my image:1":                    "white space",
		"a:1 2":                         "white space",
		":1":                            "empty",
		"a:":                            "empty",
		"a:b:c":                         "second ':'",
		".hidden:1":                     "must not start",
		"-rf:1":                         "must not start",
		"a\x00b:1":                      "contains",
		"ünicode:1":                     "contains",
		"..:1":                          "must not start",
		"x:" + strings.Repeat("t", 129): "longer",
	}
	for in, want := range bad {
		_, err := ParseRef(in)
		if !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRef(%q): %v, want ErrBadName mentioning %q", in, err, want)
		}
	}
}
