package fuse

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestErrnos checks the errors programs rely on, and that a failed call
// changes nothing.
func TestErrnos(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	file := filepath.Join(mp, "file")
	content := []byte("keep me")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mp, "dir")
	if err := os.MkdirAll(filepath.Join(dir, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, mp)

	long := strings.Repeat("n", 256)
	deep := mp + "/" + strings.Repeat("p/", 2100) // > 4096 bytes
	cases := []struct {
		name string
		want syscall.Errno
		do   func() error
	}{
		{"create 256-byte name", syscall.ENAMETOOLONG, func() error { return os.WriteFile(filepath.Join(mp, long), nil, 0o644) }},
		{"mkdir 256-byte name", syscall.ENAMETOOLONG, func() error { return os.Mkdir(filepath.Join(mp, long), 0o755) }},
		{"stat 4097-byte path", syscall.ENAMETOOLONG, func() error { _, err := os.Stat(deep[:4097]); return err }},
		{"rename dir into its child", syscall.EINVAL, func() error { return os.Rename(dir, filepath.Join(dir, "child", "x")) }},
		{"rmdir non-empty", syscall.ENOTEMPTY, func() error { return syscall.Rmdir(dir) }},
		{"pwrite past max size", syscall.EFBIG, func() error {
			f, err := os.OpenFile(file, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("x"), 1<<50)
			return err
		}},
		{"truncate past max size", syscall.EFBIG, func() error { return os.Truncate(file, 1<<50+1) }},
		{"O_EXCL on existing", syscall.EEXIST, func() error {
			f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"unlink missing", syscall.ENOENT, func() error { return os.Remove(filepath.Join(mp, "missing")) }},
		{"rmdir a file", syscall.ENOTDIR, func() error { return syscall.Rmdir(file) }},
		{"unlink a dir", syscall.EISDIR, func() error { return syscall.Unlink(dir) }},
		{"getxattr unset", syscall.ENODATA, func() error {
			_, err := syscall.Getxattr(file, "user.none", make([]byte, 16))
			return err
		}},
	}
	for _, tc := range cases {
		if got := errnoOf(tc.do()); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if after := snapshot(t, mp); !bytes.Equal([]byte(after), []byte(before)) {
		t.Errorf("failed calls changed the tree:\nbefore %s\nafter  %s", before, after)
	}
	if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, content) {
		t.Errorf("file after failed calls: %q, %v", got, err)
	}
}

// snapshot describes a tree: paths, modes, sizes.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + strconv.FormatInt(fi.Size(), 10) + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestModes checks that the mode of a new file or directory is what the
// program asked for after its own umask, and that the daemon does not
// apply its umask again (the daemon runs in this process: with umask 0
// here, 0777 must stay 0777).
func TestModes(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	check := func(p string, want uint32) {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if got := st.Mode & 0o7777; got != want {
			t.Errorf("%s: mode %o, want %o", p, got, want)
		}
	}
	must(t, syscall.Mkdir(filepath.Join(mp, "d750"), 0o750))
	check(filepath.Join(mp, "d750"), 0o750)
	must(t, syscall.Mkdir(filepath.Join(mp, "d777"), 0o777))
	check(filepath.Join(mp, "d777"), 0o777)
	fd, err := syscall.Open(filepath.Join(mp, "f666"), syscall.O_CREAT|syscall.O_WRONLY, 0o666)
	must(t, err)
	syscall.Close(fd)
	check(filepath.Join(mp, "f666"), 0o666)

	syscall.Umask(0o022)
	must(t, syscall.Mkdir(filepath.Join(mp, "d755"), 0o777))
	check(filepath.Join(mp, "d755"), 0o755)
	fd, err = syscall.Open(filepath.Join(mp, "f644"), syscall.O_CREAT|syscall.O_WRONLY, 0o666)
	must(t, err)
	syscall.Close(fd)
	check(filepath.Join(mp, "f644"), 0o644)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPermissions checks that the kernel enforces mode bits for other
// users (default_permissions, allow_other) and that new files belong to
// the user who made them, not to the daemon.
func TestPermissions(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	secret := filepath.Join(mp, "secret")
	must(t, os.WriteFile(secret, []byte("for uid 1000 only\n"), 0o600))
	must(t, os.Chown(secret, 1000, 1000))
	must(t, os.Chmod(secret, 0o600))

	as := func(uid string, args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid", uid, "--regid", uid, "--clear-groups"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := as("2000", "cat", secret)
	if err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("uid 2000 reading a 0600 file of uid 1000: err %v, output %q; want EACCES", err, out)
	}
	out, err = as("1000", "cat", secret)
	if err != nil || out != "for uid 1000 only\n" {
		t.Errorf("uid 1000 reading its own file: %v, %q", err, out)
	}

	shared := filepath.Join(mp, "shared")
	must(t, os.Mkdir(shared, 0o777))
	must(t, os.Chmod(shared, 0o777))
	if out, err := as("2000", "sh", "-c", "mkdir "+shared+"/d && touch "+shared+"/f"); err != nil {
		t.Fatalf("uid 2000 creating files: %v: %s", err, out)
	}
	for _, name := range []string{"d", "f"} {
		var st syscall.Stat_t
		must(t, syscall.Stat(filepath.Join(shared, name), &st))
		if st.Uid != 2000 || st.Gid != 2000 {
			t.Errorf("%s made by uid 2000: owner %d:%d", name, st.Uid, st.Gid)
		}
	}
	if out, err := as("2000", "chmod", "0644", secret); err == nil {
		t.Errorf("uid 2000 chmod of uid 1000's file succeeded: %s", out)
	}
	// Removal is up to the directory (root's, 0755): it must fail.
	if out, err := as("2000", "rm", "-f", secret); err == nil {
		t.Errorf("uid 2000 removed a file from root's 0755 directory: %s", out)
	}
	if _, err := os.Stat(secret); err != nil {
		t.Errorf("secret: %v", err)
	}
}
