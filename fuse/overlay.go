package fuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/client"
)

// An image mount stacks the kernel's overlayfs on a read-only FUSE mount
// of the image:
//
//	MOUNTPOINT      overlay: lowerdir=DIR/lower, upperdir=DIR/upper, workdir=DIR/work
//	DIR/lower       FUSE, read-only, the image's root file system
//	DIR/upper       the node's changes, on its local disk
//
// overlayfs gives Linux's overlay semantics exactly (copy-up, whiteouts,
// opaque directories, rename across layers) and serves files already in
// the upper layer straight from the local disk, without FUSE in the path.
// NOTES.md says why this and not FUSE passthrough.

// Names inside an overlay directory.
const (
	UpperName = "upper"
	workName  = "work"
	lowerName = "lower"
)

// ImageOptions configure MountImage.
type ImageOptions struct {
	// RootIno is the root directory of the image (imagestore resolves a
	// NAME:TAG to it).
	RootIno uint64
	// OverlayDir holds upper/, work/ and the lower mount point; it is
	// made if missing and kept across mounts.
	OverlayDir string
	// FUSE tunes the read-only lower mount; RootIno and ReadOnly are set
	// by MountImage.
	FUSE Options
}

// ImageMount is an image mounted with an overlay.
type ImageMount struct {
	lower      *FS
	mountpoint string
	dir        string
}

// imageCacheTimeout is how long the kernel caches names and attributes of
// an image: a published image never changes.
const imageCacheTimeout = time.Hour

// MountImage mounts the image at mountpoint with the upper layer in
// opts.OverlayDir. On error nothing stays mounted.
func MountImage(ctx context.Context, cl *client.Client, mountpoint string, opts ImageOptions) (*ImageMount, error) {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("fuse: mount point %s: %w", mountpoint, err)
	}
	if err := checkMountpoint(mp); err != nil {
		return nil, err
	}
	dir, err := prepareOverlayDir(opts.OverlayDir)
	if err != nil {
		return nil, err
	}
	fo := opts.FUSE
	fo.RootIno, fo.ReadOnly = opts.RootIno, true
	if fo.AttrTimeout == 0 {
		fo.AttrTimeout = imageCacheTimeout
	}
	if fo.EntryTimeout == 0 {
		fo.EntryTimeout = imageCacheTimeout
	}
	if fo.FsName == "" {
		fo.FsName = "strata-image"
	}
	lower, err := Mount(ctx, cl, filepath.Join(dir, lowerName), fo)
	if err != nil {
		return nil, err
	}
	if err := mountOverlay(dir, mp); err != nil {
		lower.Unmount()
		return nil, err
	}
	lower.log.Info("image mounted with overlay", "mountpoint", mp, "overlay", dir)
	return &ImageMount{lower: lower, mountpoint: mp, dir: dir}, nil
}

// Mountpoint is the absolute path of the overlay mount.
func (im *ImageMount) Mountpoint() string { return im.mountpoint }

// Unmount takes the overlay down, then the image. It fails with EBUSY
// while the overlay is in use, leaving both mounted.
func (im *ImageMount) Unmount() error {
	if err := unix.Unmount(im.mountpoint, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("fuse: unmount overlay %s: %w", im.mountpoint, err)
	}
	return im.lower.Unmount()
}

// Detach unmounts lazily: both mounts go when no longer busy.
func (im *ImageMount) Detach() error {
	err1 := unix.Unmount(im.mountpoint, unix.MNT_DETACH)
	if errors.Is(err1, unix.EINVAL) {
		err1 = nil // not mounted any more
	}
	err2 := unix.Unmount(im.lower.Mountpoint(), unix.MNT_DETACH)
	if errors.Is(err2, unix.EINVAL) {
		err2 = nil
	}
	return errors.Join(err1, err2)
}

// Wait returns when the lower mount is gone.
func (im *ImageMount) Wait() { im.lower.Wait() }

// prepareOverlayDir makes DIR and its upper/ and work/ directories,
// checks that DIR's file system can hold an overlayfs upper layer, and
// clears a lower mount point that a crashed mount left behind.
func prepareOverlayDir(d string) (string, error) {
	if d == "" {
		return "", fmt.Errorf("fuse: no overlay directory given")
	}
	dir, err := filepath.Abs(d)
	if err != nil {
		return "", fmt.Errorf("fuse: overlay directory %s: %w", d, err)
	}
	for _, sub := range []string{"", UpperName, workName, lowerName} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil && !errors.Is(err, syscall.ENOTCONN) {
			return "", fmt.Errorf("fuse: overlay directory: %w", err)
		}
	}
	if err := clearStaleLower(filepath.Join(dir, lowerName)); err != nil {
		return "", err
	}
	if err := CheckUpperFS(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// clearStaleLower lazily unmounts a lower mount whose daemon died (stat
// fails with ENOTCONN) or that is still mounted from an earlier run.
func clearStaleLower(p string) error {
	mounted, err := isMountpoint(p)
	if err != nil {
		return err
	}
	if !mounted {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("fuse: %s is still mounted from an earlier run and cannot be detached: %w", p, err)
	}
	return nil
}

// CheckUpperFS checks that dir's file system can hold an overlayfs upper
// layer: trusted.* extended attributes (opaque directories, copy-up
// records), whiteouts (character devices 0/0, made by rename with
// RENAME_WHITEOUT) and file types in directory entries. The kernel would
// mount without some of these and then quietly lose deletions.
func CheckUpperFS(dir string) error {
	probe, err := os.MkdirTemp(dir, ".strata-fscheck-")
	if err != nil {
		return fmt.Errorf("fuse: overlay directory %s: %w", dir, err)
	}
	defer os.RemoveAll(probe)
	fail := func(what string, err error) error {
		return fmt.Errorf("fuse: overlay directory %s is on a file system without %s, which overlayfs needs (use a local ext4, xfs, btrfs or tmpfs directory): %w", dir, what, err)
	}
	if err := unix.Setxattr(probe, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		return fail("trusted.* extended attributes", err)
	}
	f := filepath.Join(probe, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		return fmt.Errorf("fuse: overlay directory %s: %w", dir, err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, f, unix.AT_FDCWD, filepath.Join(probe, "g"), unix.RENAME_WHITEOUT); err != nil {
		return fail("whiteouts (rename with RENAME_WHITEOUT)", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(f, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		return fail("whiteouts (character device 0/0)", fmt.Errorf("no whiteout after rename: %v", err))
	}
	ents, err := os.ReadDir(probe)
	if err != nil {
		return fmt.Errorf("fuse: overlay directory %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.Name() == "f" && e.Type()&os.ModeCharDevice == 0 {
			return fail("file types in directory entries (d_type)", syscall.EINVAL)
		}
	}
	return nil
}

// mountOverlay mounts overlayfs at mp over dir's lower, upper and work
// directories.
func mountOverlay(dir, mp string) error {
	for _, p := range []string{dir, mp} {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("fuse: %s contains ',' or ':', which overlayfs mount options cannot carry", p)
		}
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		filepath.Join(dir, lowerName), filepath.Join(dir, UpperName), filepath.Join(dir, workName))
	if err := unix.Mount("strata-overlay", mp, "overlay", 0, data); err != nil {
		return fmt.Errorf("fuse: mount overlayfs at %s (%s): %w", mp, data, err)
	}
	return nil
}
