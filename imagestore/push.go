package imagestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Push saves the upper layer DIR/upper into the sub-overlay (name, node)
// and Pull restores it. A push is incremental and atomic: the saved tree
// is cloned (one metadata command, chunks shared), the clone is brought in
// line with the local tree — only entries that differ are written, file
// data deduplicated by chunk hash — and then exchanged with the saved tree
// in one rename. A pull reading meanwhile sees the old tree or the new,
// never a mix; an interrupted push leaves the old one.
//
// What "differs" means: with a push state from this DIR whose generation
// matches the sub-overlay's (nobody else pushed since), an entry whose
// ctime is the one recorded is unchanged and costs nothing; any change to
// data, mode, owner or xattrs moves ctime. Without one (first push, another
// node pushed, state lost), every entry is compared with the saved one by
// kind, size, mtime, mode, owner, target and xattrs.

// stateFile, in DIR beside upper/, records the last push or pull.
const stateFile = ".strata-overlay.json"

type pushState struct {
	Overlay    string           `json:"overlay"`
	Node       string           `json:"node"`
	Generation string           `json:"generation"`
	Ctimes     map[string]int64 `json:"ctimes"`
}

// PushResult says what a push did.
type PushResult struct {
	Entries int64 // entries of the local upper layer
	Written int64 // entries created or changed in Strata
	Removed int64 // saved entries removed (gone locally)
	Bytes   int64 // file data sent through the dedup writer
	Stored  int64 // of which new chunks
	Full    bool  // compared everything (no usable push state)
}

type pusher struct {
	s      *Store
	ctx    context.Context
	trust  map[string]int64 // ctimes of the last push, if usable
	ctimes map[string]int64
	links  map[devIno]uint64 // local hard-linked inode -> its Strata inode
	start  time.Time
	res    PushResult
}

// Push saves DIR/upper as sub-overlay (name, node).
func (s *Store) Push(ctx context.Context, name, node, dir string) (*PushResult, error) {
	if err := checkOverlay(name, node); err != nil {
		return nil, err
	}
	upper := filepath.Join(dir, "upper")
	if st, err := os.Lstat(upper); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("imagestore: push %s: %s is not an overlay directory (no upper/ in it): %v", subName(name, node), dir, err)
	}
	if _, err := s.overlayDir(ctx, name); err != nil {
		return nil, err
	}
	sub, err := s.ensureDir(ctx, subPath(name, node))
	if err != nil {
		return nil, err
	}
	old, err := s.lstat(ctx, subPath(name, node)+"/"+savedUpper)
	if err != nil {
		return nil, err
	}
	p := &pusher{s: s, ctx: ctx, ctimes: map[string]int64{}, links: map[devIno]uint64{}, start: time.Now()}
	if st := loadState(dir); old != nil && st != nil && st.Overlay == name && st.Node == node && st.Generation != "" && st.Generation == s.generation(ctx, sub.GetIno()) {
		p.trust = st.Ctimes
	}
	p.res.Full = p.trust == nil
	stage, err := s.stage(ctx, sub.GetIno(), old)
	if err != nil {
		return nil, fmt.Errorf("imagestore: push %s: %w", subName(name, node), err)
	}
	if _, err := p.syncDir("", upper, stage); err != nil {
		s.dropPush(ctx, sub.GetIno())
		return nil, fmt.Errorf("imagestore: push %s: %w", subName(name, node), err)
	}
	gen, err := s.publishPush(ctx, sub.GetIno(), old != nil)
	if err != nil {
		return nil, fmt.Errorf("imagestore: push %s: %w", subName(name, node), err)
	}
	if err := saveState(dir, &pushState{Overlay: name, Node: node, Generation: gen, Ctimes: p.ctimes}); err != nil {
		return nil, err
	}
	return &p.res, nil
}

const pushStage = ".push"

// stage makes the tree a push works on: a clone of the saved tree, or an
// empty directory on the first push.
func (s *Store) stage(ctx context.Context, sub uint64, old *stratapb.Attr) (*stratapb.Attr, error) {
	if err := s.removeTree(ctx, sub, pushStage); err != nil && !errors.Is(err, syscall.ENOENT) {
		return nil, fmt.Errorf("clear an earlier push: %w", err)
	}
	if old == nil {
		return s.cl.MkdirAt(ctx, sub, pushStage, 0o755, rootOwner)
	}
	return s.cl.CloneTree(ctx, old.GetIno(), sub, pushStage, false)
}

func (s *Store) dropPush(ctx context.Context, sub uint64) {
	if err := s.removeTree(context.WithoutCancel(ctx), sub, pushStage); err != nil && !errors.Is(err, syscall.ENOENT) {
		s.log.Warn("could not remove an unfinished push; the next push removes it", "err", err)
	}
}

// publishPush swaps the pushed tree in and records a new generation.
func (s *Store) publishPush(ctx context.Context, sub uint64, replace bool) (string, error) {
	if replace {
		if err := s.cl.RenameAt(ctx, sub, pushStage, sub, savedUpper, client.RenameExchange); err != nil {
			return "", err
		}
		if err := s.removeTree(ctx, sub, pushStage); err != nil {
			s.log.Warn("could not remove the replaced overlay tree", "err", err)
		}
	} else if err := s.cl.RenameAt(ctx, sub, pushStage, sub, savedUpper, client.RenameNoReplace); err != nil {
		return "", err
	}
	b := make([]byte, 8)
	rand.Read(b)
	gen := hex.EncodeToString(b)
	if err := s.cl.SetXattr(ctx, sub, xattrGeneration, []byte(gen), 0); err != nil {
		return "", err
	}
	return gen, nil
}

func (s *Store) generation(ctx context.Context, sub uint64) string {
	b, err := s.cl.GetXattr(ctx, sub, xattrGeneration)
	if err != nil {
		return ""
	}
	return string(b)
}

func loadState(dir string) *pushState {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil
	}
	var st pushState
	if json.Unmarshal(b, &st) != nil {
		return nil
	}
	return &st
}

// saveState writes the state atomically (temporary file, rename).
func saveState(dir string, st *pushState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("imagestore: save overlay state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("imagestore: save overlay state: %w", err)
	}
	return nil
}

// syncDir brings the Strata directory dst in line with the local directory
// local (rel is its path in the upper layer) and reports whether anything
// in it changed.
func (p *pusher) syncDir(rel, local string, dst *stratapb.Attr) (bool, error) {
	var lst unix.Stat_t
	if err := unix.Lstat(local, &lst); err != nil {
		return false, fmt.Errorf("read %s: %w", local, err)
	}
	p.res.Entries++
	unchanged := p.unchanged(rel, &lst)
	remote, err := p.s.cl.ReadDirAt(p.ctx, dst.GetIno(), true)
	if err != nil {
		return false, err
	}
	names, err := readNames(local)
	if err != nil {
		return false, err
	}
	changed := false
	have := map[string]*stratapb.Attr{}
	for _, e := range remote {
		if !names[e.GetName()] {
			if err := p.s.removeTree(p.ctx, dst.GetIno(), e.GetName()); err != nil {
				return false, fmt.Errorf("remove %s: %w", path.Join(rel, e.GetName()), err)
			}
			p.res.Removed++
			changed = true
			continue
		}
		have[e.GetName()] = e.GetAttr()
	}
	for _, name := range sortedKeys(names) {
		c, err := p.syncEntry(path.Join(rel, name), filepath.Join(local, name), dst.GetIno(), name, have[name])
		if err != nil {
			return false, err
		}
		changed = changed || c
	}
	if !unchanged || changed {
		if err := p.setAttrs(dst, local, &lst, !unchanged); err != nil {
			return false, err
		}
	}
	return changed || !unchanged, nil
}

// unchanged reports whether the last push saw rel with this ctime, and
// records the ctime for the next.
func (p *pusher) unchanged(rel string, st *unix.Stat_t) bool {
	ct := st.Ctim.Nano()
	p.ctimes[rel] = stableCtime(ct, p.start)
	old, ok := p.trust[rel]
	return ok && old == ct
}

// racyWindow: a ctime this close to when it was recorded may not move on a
// change made within the same clock tick (file system timestamps are
// coarse, a few ms), so it is recorded as 0, "compare next time", as git
// does with racily clean index entries.
const racyWindow = 2 * time.Second

func stableCtime(ct int64, recorded time.Time) int64 {
	if ct > recorded.Add(-racyWindow).UnixNano() {
		return 0
	}
	return ct
}

// syncEntry brings one entry of the Strata directory parent in line with
// the local file at local; have is what is there now (nil: nothing).
func (p *pusher) syncEntry(rel, local string, parent uint64, name string, have *stratapb.Attr) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(local, &st); err != nil {
		return false, fmt.Errorf("read %s: %w", local, err)
	}
	typ := localType(st.Mode)
	if have != nil && !sameKind(have, typ, local, &st) {
		if err := p.s.removeTree(p.ctx, parent, name); err != nil {
			return false, fmt.Errorf("replace %s: %w", rel, err)
		}
		have = nil
	}
	if typ == stratapb.FileType_DIRECTORY {
		var err error
		created := have == nil
		if created {
			have, err = p.s.cl.MkdirAt(p.ctx, parent, name, st.Mode&0o7777, client.Owner{Uid: st.Uid, Gid: st.Gid})
			if err != nil {
				return false, fmt.Errorf("mkdir %s: %w", rel, err)
			}
			delete(p.trust, rel)
		}
		c, err := p.syncDir(rel, local, have)
		return created || c, err
	}
	p.res.Entries++
	if st.Nlink > 1 {
		key := devIno{uint64(st.Dev), st.Ino}
		if ino, ok := p.links[key]; ok {
			p.ctimes[rel] = st.Ctim.Nano()
			return p.relink(rel, parent, name, ino, have)
		}
		defer func() {
			if have != nil {
				p.links[key] = have.GetIno()
			}
		}()
	}
	if p.unchanged(rel, &st) && have != nil {
		return false, nil
	}
	var err error
	have, err = p.writeEntry(rel, local, parent, name, have, &st)
	return true, err
}

// relink makes name another link of Strata inode ino, unless it is one.
func (p *pusher) relink(rel string, parent uint64, name string, ino uint64, have *stratapb.Attr) (bool, error) {
	if have != nil && have.GetIno() == ino {
		return false, nil
	}
	if have != nil {
		if err := p.s.removeTree(p.ctx, parent, name); err != nil {
			return false, fmt.Errorf("relink %s: %w", rel, err)
		}
	}
	if _, err := p.s.cl.LinkAt(p.ctx, ino, parent, name); err != nil {
		return false, fmt.Errorf("link %s: %w", rel, err)
	}
	p.res.Written++
	return true, nil
}

// writeEntry creates or updates a non-directory and returns its attributes.
func (p *pusher) writeEntry(rel, local string, parent uint64, name string, have *stratapb.Attr, st *unix.Stat_t) (*stratapb.Attr, error) {
	o := client.Owner{Uid: st.Uid, Gid: st.Gid}
	typ := localType(st.Mode)
	var err error
	created := have == nil
	if created {
		switch typ {
		case stratapb.FileType_REGULAR:
			have, _, err = p.s.cl.CreateAt(p.ctx, parent, name, st.Mode&0o7777, o, client.CreateOptions{Exclusive: true})
		case stratapb.FileType_SYMLINK:
			var target string
			if target, err = os.Readlink(local); err == nil {
				have, err = p.s.cl.SymlinkAt(p.ctx, parent, name, target, o)
			}
		default:
			have, err = p.s.cl.MknodAt(p.ctx, parent, name, typ, st.Mode&0o7777, uint32(st.Rdev), o)
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", rel, err)
		}
	}
	dataDiff := typ == stratapb.FileType_REGULAR && (have.GetSize() != uint64(st.Size) || have.GetMtimeNs() != st.Mtim.Nano())
	if !created {
		same, err := p.sameAttrs(have, local, st)
		if err != nil || same && !dataDiff {
			return have, err // compared equal: nothing to send
		}
	}
	if dataDiff {
		if err := p.writeData(rel, local, have.GetIno()); err != nil {
			return nil, err
		}
	}
	p.res.Written++
	return have, p.setAttrs(have, local, st, true)
}

// sameAttrs reports whether the saved entry has the local file's mode,
// owner, mtime and xattrs.
func (p *pusher) sameAttrs(have *stratapb.Attr, local string, st *unix.Stat_t) (bool, error) {
	if have.GetUid() != st.Uid || have.GetGid() != st.Gid || have.GetMtimeNs() != st.Mtim.Nano() {
		return false, nil
	}
	if localType(st.Mode) != stratapb.FileType_SYMLINK && have.GetMode() != st.Mode&0o7777 {
		return false, nil
	}
	want, err := readXattrs(local)
	if err != nil {
		return false, err
	}
	names, err := p.s.cl.ListXattr(p.ctx, have.GetIno())
	if err != nil || len(names) != len(want) {
		return false, err
	}
	for _, n := range names {
		w, ok := want[n]
		if !ok {
			return false, nil
		}
		v, err := p.s.cl.GetXattr(p.ctx, have.GetIno(), n)
		if err != nil || !bytes.Equal(v, w) {
			return false, err
		}
	}
	return true, nil
}

func (p *pusher) writeData(rel, local string, ino uint64) error {
	f, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("read %s: %w", local, err)
	}
	defer f.Close()
	ds, err := p.s.cl.WriteFileDedup(p.ctx, ino, f)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	p.res.Bytes += ds.Logical
	p.res.Stored += ds.Written
	return nil
}

// setAttrs makes the Strata inode's xattrs (with full, every one is
// compared), mode, owner and times those of the local file.
func (p *pusher) setAttrs(have *stratapb.Attr, local string, st *unix.Stat_t, full bool) error {
	ino := have.GetIno()
	if full {
		if err := p.syncXattrs(ino, local); err != nil {
			return err
		}
	}
	in := client.SetAttrIn{
		Valid: uint32(stratapb.SetAttrMask_SETATTR_UID | stratapb.SetAttrMask_SETATTR_GID |
			stratapb.SetAttrMask_SETATTR_ATIME | stratapb.SetAttrMask_SETATTR_MTIME),
		Uid: st.Uid, Gid: st.Gid, AtimeNs: st.Atim.Nano(), MtimeNs: st.Mtim.Nano(),
	}
	if localType(st.Mode) != stratapb.FileType_SYMLINK {
		in.Valid |= uint32(stratapb.SetAttrMask_SETATTR_MODE)
		in.Mode = st.Mode & 0o7777
	}
	if _, err := p.s.cl.SetAttr(p.ctx, ino, in); err != nil {
		return fmt.Errorf("set attributes of %s: %w", local, err)
	}
	return nil
}

// syncXattrs sets every xattr of the local file (overlayfs's own
// trusted.overlay.* included: opaque directories, redirects) and removes
// the ones it no longer has.
func (p *pusher) syncXattrs(ino uint64, local string) error {
	want, err := readXattrs(local)
	if err != nil {
		return err
	}
	names, err := p.s.cl.ListXattr(p.ctx, ino)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, keep := want[n]; !keep {
			if err := p.s.cl.RemoveXattr(p.ctx, ino, n); err != nil {
				return err
			}
		}
	}
	for n, v := range want {
		if err := p.s.cl.SetXattr(p.ctx, ino, n, v, 0); err != nil {
			return fmt.Errorf("xattr %s of %s: %w", n, local, err)
		}
	}
	return nil
}

// localType maps a stat mode to Strata's file types.
func localType(mode uint32) stratapb.FileType {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return stratapb.FileType_DIRECTORY
	case unix.S_IFLNK:
		return stratapb.FileType_SYMLINK
	case unix.S_IFCHR:
		return stratapb.FileType_CHARDEV
	case unix.S_IFBLK:
		return stratapb.FileType_BLOCKDEV
	case unix.S_IFIFO:
		return stratapb.FileType_FIFO
	case unix.S_IFSOCK:
		return stratapb.FileType_SOCKET
	}
	return stratapb.FileType_REGULAR
}

// sameKind reports whether the saved entry can be updated in place: same
// type, same symlink target or device, and not a hard link the local file
// no longer shares.
func sameKind(have *stratapb.Attr, typ stratapb.FileType, local string, st *unix.Stat_t) bool {
	if have.GetType() != typ {
		return false
	}
	switch typ {
	case stratapb.FileType_SYMLINK:
		target, err := os.Readlink(local)
		return err == nil && target == have.GetSymlinkTarget()
	case stratapb.FileType_CHARDEV, stratapb.FileType_BLOCKDEV:
		return have.GetRdev() == uint32(st.Rdev)
	case stratapb.FileType_REGULAR:
		return have.GetNlink() <= 1 || st.Nlink > 1
	}
	return true
}

func readNames(dir string) (map[string]bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
