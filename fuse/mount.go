// Package fuse mounts a Strata file system through the kernel's FUSE
// driver with hanwen/go-fuse/v2, so that ordinary programs and MPI jobs use
// Strata like a local disk.
//
// It uses go-fuse's fs node API (one node per inode the kernel knows, with
// StableAttr.Ino set to Strata's inode number so st_ino is the server's)
// rather than the raw API that JuiceFS and SeaweedFS use: the node API
// keeps the kernel's lookup counts for us, and with StableAttr.Ino the only
// thing the raw API would add, server inode numbers as FUSE node ids, is
// not needed (NFS export is not a goal of this slice).
//
// Consistency between mounts is close-to-open, as with NFS: close (FUSE
// flush) sends every buffered byte to Strata before it returns, and open
// re-reads the attributes from the metadata service, dropping the kernel's
// cached pages and attributes when the file changed. Between those points
// a mount sees other mounts' changes after the attribute and entry
// timeouts (1 s by default).
package fuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	gofuse "github.com/hanwen/go-fuse/v2/fuse"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// Options configure a mount. Start from DefaultOptions.
type Options struct {
	// AttrTimeout and EntryTimeout are how long the kernel may cache
	// attributes and names before asking again. Zero means the default
	// (1 s); a negative value disables caching.
	AttrTimeout  time.Duration
	EntryTimeout time.Duration
	// AllowOther lets users other than the one who mounted use the mount;
	// the kernel then enforces mode bits itself (default_permissions).
	AllowOther bool
	// MaxWrite and MaxReadAhead bound one FUSE write and the kernel's
	// readahead, in bytes (default and maximum 1 MiB).
	MaxWrite     int
	MaxReadAhead int
	// FsName is the "device" shown in /proc/mounts (default "strata").
	FsName string
	// LockTTL is the lease of the mount's session in the cluster's lock
	// table (flock, fcntl): if the mount stops renewing it for this long
	// (node dead or cut off), its locks are released. Default 10 s.
	LockTTL time.Duration
	// Activity, when set, counts the requests the mount serves (see
	// Activity; the boot agent reports them for power saving).
	Activity *Activity
	// Debug logs every FUSE request and reply (go-fuse's debug output).
	Debug  bool
	Logger *slog.Logger
	// RootIno, when set, mounts the tree below that directory (an image's
	// root file system) instead of the tenant's whole namespace.
	RootIno uint64
	// ReadOnly mounts read-only ("ro"): the kernel refuses every change
	// with EROFS before it reaches Strata. Image mounts use it.
	ReadOnly bool
	// RootSquash treats requests of uid 0 as nobody's (squash.go). On by
	// default for mounts of a tenant (`strata mount --no-root-squash`).
	RootSquash bool
}

const (
	defaultTimeout = time.Second
	maxIO          = 1 << 20
	// statfsTTL is how long a Statfs answer is reused: df and some MPI
	// libraries call statfs often, and each costs a cluster status RPC.
	statfsTTL = 5 * time.Second
)

// DefaultOptions returns the options `strata mount` uses.
func DefaultOptions() Options {
	return Options{
		AttrTimeout: defaultTimeout, EntryTimeout: defaultTimeout,
		AllowOther: true, MaxWrite: maxIO, MaxReadAhead: maxIO, FsName: "strata",
		LockTTL: defaultLockTTL,
	}
}

func (o *Options) fill() {
	fix := func(d *time.Duration) {
		switch {
		case *d == 0:
			*d = defaultTimeout
		case *d < 0:
			*d = 0
		}
	}
	fix(&o.AttrTimeout)
	fix(&o.EntryTimeout)
	if o.MaxWrite <= 0 || o.MaxWrite > maxIO {
		o.MaxWrite = maxIO
	}
	if o.MaxReadAhead <= 0 || o.MaxReadAhead > maxIO {
		o.MaxReadAhead = maxIO
	}
	if o.FsName == "" {
		o.FsName = "strata"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// FS is a mounted Strata file system. (The type cannot be called Mount:
// that is the function that makes one.)
type FS struct {
	cl         *client.Client
	opts       Options
	log        *slog.Logger
	mountpoint string
	server     *gofuse.Server

	locks *lockSession
	// frozen keeps what the mount learns of frozen trees; only read-only
	// (image) mounts have one (imagecache.go).
	frozen *frozenCache
	root   *node
	// changes counts changes made through the mount, aheadHits the
	// lookups answered from a statahead listing (statahead.go).
	changes, aheadHits atomic.Uint64
	// bufs recycles the write buffers of whole chunks (wbuf.go).
	bufs bufPool

	statfsMu sync.Mutex
	statfs   client.FSStats
	statfsAt time.Time
}

// Mount mounts the file system of cl at mountpoint, which must be an
// existing, empty directory that is not a mount point already. It returns
// once the kernel has the mount; ctx bounds only the setup. The caller
// keeps ownership of cl and closes it after Unmount.
func Mount(ctx context.Context, cl *client.Client, mountpoint string, opts Options) (*FS, error) {
	opts.fill()
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("fuse: mount point %s: %w", mountpoint, err)
	}
	if err := checkDevice(); err != nil {
		return nil, err
	}
	if err := checkMountpoint(mp); err != nil {
		return nil, err
	}
	if opts.RootIno == 0 {
		opts.RootIno = rootIno
	}
	rootAttr, err := cl.GetAttr(ctx, opts.RootIno)
	if err == nil && rootAttr.GetType() != stratapb.FileType_DIRECTORY {
		err = fmt.Errorf("inode %d is a %s, not a directory: %w", opts.RootIno, rootAttr.GetType(), syscall.ENOTDIR)
	}
	if err != nil {
		return nil, fmt.Errorf("fuse: reading the root of the file system: %w", err)
	}
	m := &FS{cl: cl, opts: opts, mountpoint: mp,
		log: opts.Logger.With("component", "fuse", "mountpoint", mp)}
	m.locks = newLockSession(m, opts.LockTTL)
	if opts.ReadOnly {
		m.frozen = newFrozenCache(cl)
	}
	root := &node{m: m}
	m.root = root
	root.setChunkSize(rootAttr)
	if rootAttr.GetFrozen() && m.frozen != nil {
		root.fattr = rootAttr
	}
	server, err := m.serve(mp, root)
	if err != nil {
		m.closeFrozen()
		return nil, fmt.Errorf("fuse: mount %s: %w", mp, err)
	}
	m.server = server
	m.log.Info("mounted", "attr_timeout", opts.AttrTimeout, "entry_timeout", opts.EntryTimeout, "allow_other", opts.AllowOther)
	return m, nil
}

const rootIno = 1

// serve is fs.Mount with the raw file system wrapped, so that FLUSH's lock
// owner reaches the node API (see ownerRaw).
func (m *FS) serve(mp string, root *node) (*gofuse.Server, error) {
	opts := m.fsOptions()
	raw := &ownerRaw{RawFileSystem: countActivity(fs.NewNodeFS(root, opts), m.opts.Activity), ls: m.locks}
	server, err := gofuse.NewServer(raw, mp, &opts.MountOptions)
	if err != nil {
		return nil, err
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, err // the serve loop ends by itself: there is no mount
	}
	return server, nil
}

func (m *FS) fsOptions() *fs.Options {
	at, et, neg := m.opts.AttrTimeout, m.opts.EntryTimeout, time.Duration(0)
	if m.opts.ReadOnly {
		// Nothing appears in a read-only mount of an immutable image, so
		// "no such file" may be cached too (the loader and PATH searches
		// probe many missing names).
		neg = et
	}
	mo := gofuse.MountOptions{
		AllowOther:   m.opts.AllowOther,
		MaxWrite:     m.opts.MaxWrite,
		MaxReadAhead: m.opts.MaxReadAhead,
		FsName:       m.opts.FsName,
		Name:         "strata",
		Debug:        m.opts.Debug,
		// The kernel checks mode bits, owners and groups against the
		// attributes we return, so one daemon serves many users safely.
		Options: []string{"default_permissions"},
		// flock and fcntl locks come to us and go to the cluster's lock
		// table (locks.go), instead of staying local to this node.
		EnableLocks: true,
	}
	if m.opts.ReadOnly {
		mo.Options = append(mo.Options, "ro")
		// An image's symlinks never change: the kernel may keep them.
		mo.EnableSymlinkCaching = true
	}
	return &fs.Options{
		MountOptions: mo,
		AttrTimeout:  &at, EntryTimeout: &et, NegativeTimeout: &neg,
		// Mode 0 is a real mode (chmod 000), not "unset".
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Ino: m.opts.RootIno, Gen: 1},
	}
}

// Mountpoint is the absolute path of the mount.
func (m *FS) Mountpoint() string { return m.mountpoint }

// Unmount unmounts the file system. It fails with EBUSY while a process
// has a file open or its working directory below the mount point.
func (m *FS) Unmount() error {
	if err := m.server.Unmount(); err != nil {
		return fmt.Errorf("fuse: unmount %s: %w", m.mountpoint, err)
	}
	m.locks.close()
	m.closeFrozen()
	m.log.Info("unmounted")
	return nil
}

// Wait returns when the file system is unmounted, by Unmount or from
// outside (fusermount3 -u, umount).
func (m *FS) Wait() {
	m.server.Wait()
	m.locks.close()
	m.closeFrozen()
}

func (m *FS) closeFrozen() {
	if m.frozen != nil {
		m.frozen.close()
	}
}

// checkDevice fails early, with a hint, where FUSE cannot work at all.
func checkDevice() error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("fuse: /dev/fuse is missing (load the fuse module, or give the container --device /dev/fuse): %w", err)
	}
	return nil
}

// checkMountpoint refuses a mount point that is missing, not a directory,
// not empty, or a mount already (a stale FUSE mount fails stat with
// ENOTCONN).
func checkMountpoint(mp string) error {
	st, err := os.Stat(mp)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("fuse: %s is a stale FUSE mount (run fusermount3 -u %s): %w", mp, mp, syscall.EBUSY)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("fuse: mount point %s does not exist: %w", mp, syscall.ENOENT)
	case err != nil:
		return fmt.Errorf("fuse: mount point: %w", err)
	case !st.IsDir():
		return fmt.Errorf("fuse: mount point %s is not a directory: %w", mp, syscall.ENOTDIR)
	}
	mounted, err := isMountpoint(mp)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("fuse: %s is already a mount point: %w", mp, syscall.EBUSY)
	}
	f, err := os.Open(mp)
	if err != nil {
		return fmt.Errorf("fuse: mount point: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return fmt.Errorf("fuse: mount point %s is not empty: %w", mp, syscall.ENOTEMPTY)
	}
	return nil
}
