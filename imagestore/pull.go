package imagestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// PullOptions tune Pull.
type PullOptions struct {
	// Force replaces a non-empty local upper layer.
	Force bool
}

// PullResult says what a pull did.
type PullResult struct {
	Entries int64
	Bytes   int64
	// Empty: the sub-overlay was never pushed; DIR starts empty (a node's
	// first activation).
	Empty bool
}

// Pull restores sub-overlay (name, node) into DIR/upper, for an image
// mount on this node. DIR must not be in use by a mount. The tree is
// written beside upper/ and renamed into place, so an interrupted pull
// leaves the old upper layer.
func (s *Store) Pull(ctx context.Context, name, node, dir string, opts PullOptions) (*PullResult, error) {
	if err := checkOverlay(name, node); err != nil {
		return nil, err
	}
	if _, err := s.overlayDir(ctx, name); err != nil {
		return nil, err
	}
	if err := checkNotMounted(dir); err != nil {
		return nil, err
	}
	upper := filepath.Join(dir, "upper")
	if !opts.Force && !emptyDir(upper) {
		return nil, fmt.Errorf("%w: %s already holds an upper layer (push it first, or pull with --force to replace it)", ErrExists, upper)
	}
	sub, err := s.lstat(ctx, subPath(name, node))
	if err != nil {
		return nil, err
	}
	var saved *stratapb.Attr
	if sub != nil {
		if saved, err = s.lstat(ctx, subPath(name, node)+"/"+savedUpper); err != nil {
			return nil, err
		}
	}
	res := &PullResult{Empty: saved == nil}
	tmp := filepath.Join(dir, ".upper-pull")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("imagestore: pull: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("imagestore: pull: %w", err)
	}
	if saved != nil {
		pl := &puller{s: s, ctx: ctx, links: map[uint64]string{}, res: res}
		if err := pl.pullDir(subPath(name, node)+"/"+savedUpper, saved, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("imagestore: pull %s: %w", subName(name, node), err)
		}
	}
	if err := replaceDir(tmp, upper); err != nil {
		return nil, err
	}
	// overlayfs's work directory belongs to the old upper layer.
	os.RemoveAll(filepath.Join(dir, "work"))
	if err := os.MkdirAll(filepath.Join(dir, "work"), 0o755); err != nil {
		return nil, fmt.Errorf("imagestore: pull: %w", err)
	}
	gen := ""
	if sub != nil {
		gen = s.generation(ctx, sub.GetIno())
	}
	ctimes, err := localCtimes(upper)
	if err != nil {
		return nil, err
	}
	if err := saveState(dir, &pushState{Overlay: name, Node: node, Generation: gen, Ctimes: ctimes}); err != nil {
		return nil, err
	}
	return res, nil
}

// OverlayDirUsed reports whether dir already holds an upper layer or the
// state of a push or pull: a node's overlay directory in use, which a pull
// on mount must not replace.
func OverlayDirUsed(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
		return true
	}
	return !emptyDir(filepath.Join(dir, "upper"))
}

// replaceDir puts tmp at dst, removing what was there.
func replaceDir(tmp, dst string) error {
	old := dst + ".old"
	os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("imagestore: pull: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("imagestore: pull: %w", err)
	}
	return os.RemoveAll(old)
}

func emptyDir(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return true
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) == 0
}

// checkNotMounted refuses a DIR whose layers are mounted: overlayfs must
// not see its upper layer change under it.
func checkNotMounted(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return fmt.Errorf("imagestore: list mounts: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		if f[1] == filepath.Join(abs, "lower") || strings.Contains(f[3], "upperdir="+filepath.Join(abs, "upper")) {
			return fmt.Errorf("imagestore: %s is in use by a mount (%s); unmount it first", dir, f[1])
		}
	}
	return nil
}

// localCtimes records the ctime of every entry below root, for the push
// state after a pull.
func localCtimes(root string) (map[string]int64, error) {
	out := map[string]int64{}
	now := time.Now()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			rel = ""
		}
		out[filepath.ToSlash(rel)] = stableCtime(st.Ctim.Nano(), now)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("imagestore: pull: %w", err)
	}
	return out, nil
}

type puller struct {
	s     *Store
	ctx   context.Context
	links map[uint64]string // Strata inode -> first local path
	res   *PullResult
}

// pullDir writes the children of the Strata directory at remote (attrs a)
// into the existing local directory local, then sets local's attributes.
func (pl *puller) pullDir(remote string, a *stratapb.Attr, local string) error {
	ents, err := pl.s.cl.ReadDirAt(pl.ctx, a.GetIno(), true)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := pl.pullEntry(remote+"/"+e.GetName(), e.GetAttr(), filepath.Join(local, e.GetName())); err != nil {
			return err
		}
	}
	return pl.setLocal(local, a)
}

func (pl *puller) pullEntry(remote string, a *stratapb.Attr, local string) error {
	pl.res.Entries++
	switch a.GetType() {
	case stratapb.FileType_DIRECTORY:
		if err := os.Mkdir(local, 0o700); err != nil {
			return err
		}
		return pl.pullDir(remote, a, local)
	case stratapb.FileType_REGULAR:
		if first, ok := pl.links[a.GetIno()]; ok {
			return os.Link(first, local)
		}
		if a.GetNlink() > 1 {
			pl.links[a.GetIno()] = local
		}
		if err := pl.pullFile(remote, local); err != nil {
			return err
		}
		pl.res.Bytes += int64(a.GetSize())
	case stratapb.FileType_SYMLINK:
		if err := os.Symlink(a.GetSymlinkTarget(), local); err != nil {
			return err
		}
	default:
		mode := map[stratapb.FileType]uint32{
			stratapb.FileType_CHARDEV: unix.S_IFCHR, stratapb.FileType_BLOCKDEV: unix.S_IFBLK,
			stratapb.FileType_FIFO: unix.S_IFIFO, stratapb.FileType_SOCKET: unix.S_IFSOCK,
		}[a.GetType()]
		if err := unix.Mknod(local, mode|0o600, int(a.GetRdev())); err != nil {
			return fmt.Errorf("mknod %s: %w", local, err)
		}
	}
	return pl.setLocal(local, a)
}

func (pl *puller) pullFile(remote, local string) error {
	f, err := os.OpenFile(local, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := pl.s.cl.Get(pl.ctx, remote, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// setLocal gives a local entry the saved xattrs, owner, mode and times.
func (pl *puller) setLocal(local string, a *stratapb.Attr) error {
	names, err := pl.s.cl.ListXattr(pl.ctx, a.GetIno())
	if err != nil {
		return err
	}
	for _, n := range names {
		v, err := pl.s.cl.GetXattr(pl.ctx, a.GetIno(), n)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(local, n, v, 0); err != nil {
			return fmt.Errorf("xattr %s of %s: %w", n, local, err)
		}
	}
	if err := os.Lchown(local, int(a.GetUid()), int(a.GetGid())); err != nil {
		return err
	}
	if a.GetType() != stratapb.FileType_SYMLINK {
		if err := unix.Chmod(local, a.GetMode()&0o7777); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.NsecToTimespec(a.GetAtimeNs()), unix.NsecToTimespec(a.GetMtimeNs())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, local, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("times of %s: %w", local, err)
	}
	return nil
}
