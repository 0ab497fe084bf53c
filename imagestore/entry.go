package imagestore

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrBadSource marks an import source the store refuses: an unsafe path, a
// truncated or corrupt archive, an entry type it cannot keep.
var ErrBadSource = errors.New("imagestore: bad source")

// Kind is the type of one entry of a root file system.
type Kind int

const (
	KindDir Kind = iota + 1
	KindRegular
	KindSymlink
	KindHardlink // another name of an earlier entry (Entry.Link)
	KindChar
	KindBlock
	KindFifo
	KindSocket
)

func (k Kind) String() string {
	switch k {
	case KindDir:
		return "directory"
	case KindRegular:
		return "file"
	case KindSymlink:
		return "symlink"
	case KindHardlink:
		return "hard link"
	case KindChar:
		return "char device"
	case KindBlock:
		return "block device"
	case KindFifo:
		return "fifo"
	case KindSocket:
		return "socket"
	}
	return fmt.Sprintf("kind %d", int(k))
}

// Entry is one entry of a source tree, in the order the source yields it
// (a parent may come after its children in a tarball, or not at all).
type Entry struct {
	// Path is relative to the image root, cleaned, without "." or ".."
	// components; "" is the root itself.
	Path string
	Kind Kind
	// Mode is the permission bits with setuid, setgid and sticky (07777).
	Mode     uint32
	Uid, Gid uint32
	Size     int64
	MtimeNs  int64
	// Link is a symlink's target (as stored) or, for a hard link, the Path
	// of the entry it names.
	Link               string
	DevMajor, DevMinor uint32
	Xattrs             map[string][]byte
	// Open returns the data of a regular file. For a tarball it may only
	// be called before the next call to Next, unless Data is set.
	Open func() (io.ReadCloser, error)
	// Data holds a small file's bytes already read (tarballs), so that the
	// file can be written while the source moves on.
	Data []byte
}

// Source yields the entries of a root file system: a tarball or a local
// directory.
type Source interface {
	// Next returns the next entry, or io.EOF after the last.
	Next() (*Entry, error)
	// Detached reports whether an entry's Open stays valid after Next.
	Detached() bool
	// Progress returns how many bytes of the source were consumed and how
	// many there are in all (0 when unknown), for the progress bar.
	Progress() (done, total int64)
	// Describe names the source in messages and in the image's record.
	Describe() string
	Close() error
}

// cleanPath turns a member name into an image path, refusing names that
// are absolute or climb out of the root with "..". A trailing "/" and
// leading "./" are dropped; "." and "./" are the root ("").
func cleanPath(name string) (string, error) {
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty member name", ErrBadSource)
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%w: member name %q contains a NUL byte", ErrBadSource, name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: %q is an absolute path (member names must be relative to the root)", ErrBadSource, name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: %q has a '..' component (would escape the image root)", ErrBadSource, name)
		}
	}
	p := path.Clean(name)
	if p == "." {
		return "", nil
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > 255 {
			return "", fmt.Errorf("%w: %q has a component longer than 255 bytes", ErrBadSource, name)
		}
	}
	return p, nil
}

// checkSymlink refuses a relative symlink target that climbs above the
// image root from where the link is (e.g. "a/l -> ../../etc"). Absolute
// targets are kept: in a root file system they name paths inside the
// image (a chroot or container resolves them against its own root), and
// every Debian tree has them (/etc/localtime, /lib64/ld-linux-x86-64.so.2).
func checkSymlink(p, target string) error {
	switch {
	case target == "":
		return fmt.Errorf("%w: symlink %q has an empty target", ErrBadSource, p)
	case len(target) >= 4096:
		return fmt.Errorf("%w: symlink %q: target longer than 4095 bytes", ErrBadSource, p)
	case strings.IndexByte(target, 0) >= 0:
		return fmt.Errorf("%w: symlink %q: target contains a NUL byte", ErrBadSource, p)
	case strings.HasPrefix(target, "/"):
		return nil
	}
	depth := strings.Count(p, "/") // directories between the root and the link
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return fmt.Errorf("%w: symlink %q -> %q escapes the image root", ErrBadSource, p, target)
			}
		default:
			depth++
		}
	}
	return nil
}

// checkEntry applies the path rules to every path an entry carries.
func checkEntry(e *Entry) error {
	switch e.Kind {
	case KindSymlink:
		return checkSymlink(e.Path, e.Link)
	case KindHardlink:
		if e.Link == "" {
			return fmt.Errorf("%w: hard link %q has no target", ErrBadSource, e.Path)
		}
		target, err := cleanPath(e.Link)
		if err != nil {
			return fmt.Errorf("hard link %q: %w", e.Path, err)
		}
		if target == "" {
			return fmt.Errorf("%w: hard link %q names the root", ErrBadSource, e.Path)
		}
		e.Link = target
	}
	if e.Path == "" && e.Kind != KindDir {
		return fmt.Errorf("%w: the root entry is a %s, not a directory", ErrBadSource, e.Kind)
	}
	return nil
}
