package imagestore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// dirSource walks a local directory in lexical order, parents before
// children, with lstat: symlinks are entries, never followed. Files with
// several links become one file plus hard links.
type dirSource struct {
	root  string
	queue []string // relative paths still to visit, a stack
	links map[devIno]string
	done  atomic.Int64
}

type devIno struct{ dev, ino uint64 }

// OpenDir opens a local directory for import.
func OpenDir(root string) (Source, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("imagestore: %s: %w", root, err)
	}
	st, err := os.Lstat(abs)
	if err != nil {
		return nil, fmt.Errorf("imagestore: source: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrBadSource, root)
	}
	return &dirSource{root: abs, queue: []string{""}, links: make(map[devIno]string)}, nil
}

func (s *dirSource) Describe() string         { return "directory " + s.root }
func (s *dirSource) Detached() bool           { return true }
func (s *dirSource) Close() error             { return nil }
func (s *dirSource) Progress() (int64, int64) { return s.done.Load(), 0 }
func (s *dirSource) abs(rel string) string    { return filepath.Join(s.root, rel) }

// Next visits the next path: depth first, names in order.
func (s *dirSource) Next() (*Entry, error) {
	if len(s.queue) == 0 {
		return nil, io.EOF
	}
	rel := s.queue[len(s.queue)-1]
	s.queue = s.queue[:len(s.queue)-1]
	e, err := s.entry(rel)
	if err != nil {
		return nil, err
	}
	if e.Kind == KindDir {
		if err := s.queueChildren(rel); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (s *dirSource) queueChildren(rel string) error {
	ents, err := os.ReadDir(s.abs(rel))
	if err != nil {
		return fmt.Errorf("imagestore: read directory: %w", err)
	}
	// Pushed in reverse so that the stack pops them in name order.
	for i := len(ents) - 1; i >= 0; i-- {
		s.queue = append(s.queue, filepath.Join(rel, ents[i].Name()))
	}
	return nil
}

func (s *dirSource) entry(rel string) (*Entry, error) {
	p := s.abs(rel)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, fmt.Errorf("imagestore: source: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("imagestore: %s: no stat data", p)
	}
	e := &Entry{
		Path: filepath.ToSlash(rel), Mode: uint32(st.Mode) & 0o7777, Uid: st.Uid, Gid: st.Gid,
		MtimeNs: st.Mtim.Nano(),
	}
	if err := s.setKind(e, p, st); err != nil {
		return nil, err
	}
	x, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	e.Xattrs = x
	if err := checkEntry(e); err != nil {
		return nil, err
	}
	return e, nil
}

// setKind fills the type-dependent fields; a second name of a multiply
// linked file becomes a hard link to the first.
func (s *dirSource) setKind(e *Entry, p string, st *syscall.Stat_t) error {
	mode := st.Mode & syscall.S_IFMT
	if mode != syscall.S_IFDIR && st.Nlink > 1 {
		key := devIno{uint64(st.Dev), st.Ino}
		if first, ok := s.links[key]; ok {
			e.Kind, e.Link = KindHardlink, first
			return nil
		}
		s.links[key] = e.Path
	}
	switch mode {
	case syscall.S_IFDIR:
		e.Kind = KindDir
	case syscall.S_IFREG:
		e.Kind, e.Size = KindRegular, st.Size
		e.Open = func() (io.ReadCloser, error) {
			f, err := os.Open(p)
			if err != nil {
				return nil, fmt.Errorf("imagestore: source: %w", err)
			}
			return &countingFile{f: f, s: s}, nil
		}
	case syscall.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("imagestore: source: %w", err)
		}
		e.Kind, e.Link = KindSymlink, target
	case syscall.S_IFCHR, syscall.S_IFBLK:
		e.Kind = KindChar
		if mode == syscall.S_IFBLK {
			e.Kind = KindBlock
		}
		e.DevMajor, e.DevMinor = unix.Major(st.Rdev), unix.Minor(st.Rdev)
	case syscall.S_IFIFO:
		e.Kind = KindFifo
	case syscall.S_IFSOCK:
		e.Kind = KindSocket
	default:
		return fmt.Errorf("%w: %s has an unknown file type %#o", ErrBadSource, p, mode)
	}
	return nil
}

type countingFile struct {
	f *os.File
	s *dirSource
}

func (c *countingFile) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.s.done.Add(int64(n))
	return n, err
}

func (c *countingFile) Close() error { return c.f.Close() }

// readXattrs returns every extended attribute of p (not following a
// symlink): security.capability, trusted.*, user.* and the POSIX ACLs.
func readXattrs(p string) (map[string][]byte, error) {
	names, err := listXattrs(p)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		v, err := getXattr(p, n)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("imagestore: %s: xattr %s: %w", p, n, err)
		}
		out[n] = v
	}
	return out, nil
}

func listXattrs(p string) ([]string, error) {
	size, err := unix.Llistxattr(p, nil)
	for {
		if errors.Is(err, unix.ENOTSUP) || size == 0 {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("imagestore: %s: list xattrs: %w", p, err)
		}
		buf := make([]byte, size)
		n, err2 := unix.Llistxattr(p, buf)
		if errors.Is(err2, unix.ERANGE) {
			size, err = unix.Llistxattr(p, nil)
			continue
		}
		if err2 != nil {
			return nil, fmt.Errorf("imagestore: %s: list xattrs: %w", p, err2)
		}
		return splitNul(buf[:n]), nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}
