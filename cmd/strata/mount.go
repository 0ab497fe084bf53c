package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/fuse"
	"github.com/strata-hpc/strata/internal/pki"
)

func init() {
	register(command{name: "mount", summary: "mount the file system with FUSE (runs until unmounted or interrupted)", run: runMount})
	register(command{name: "umount", summary: "unmount a Strata mount", run: runUmount})
}

func runMount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mount", stderr)
	cf := addClientFlags(fs)
	o := fuse.DefaultOptions()
	fs.DurationVar(&o.AttrTimeout, "attr-timeout", o.AttrTimeout, "how long the kernel caches attributes (close-to-open consistency holds regardless)")
	fs.DurationVar(&o.EntryTimeout, "entry-timeout", o.EntryTimeout, "how long the kernel caches names")
	fs.BoolVar(&o.AllowOther, "allow-other", o.AllowOther, "let every user use the mount (the kernel enforces permissions)")
	fs.BoolVar(&o.Debug, "debug", false, "log every FUSE request")
	fs.DurationVar(&o.LockTTL, "lock-ttl", o.LockTTL, "lease of this mount's flock/fcntl locks: if the mount stops renewing it this long (node dead or cut off), its locks are released")
	cacheDir := fs.String("cache-dir", envDefault("cache-dir", "/var/cache/strata"), "local chunk cache, shared by the mounts of this node (\"\" for none)")
	cacheSize := fs.Int64("cache-size", client.DefaultCacheBytes, "bytes the chunk cache may use")
	image := fs.String("image", envDefault("image", ""), "mount this image (NAME:TAG) read-only, with --overlay as its writable upper layer")
	overlay := fs.String("overlay", envDefault("overlay", ""), "with --image: local directory of the overlay (upper layer on this node's disk; made if missing, kept across mounts)")
	pull := fs.String("pull", envDefault("pull", ""), "with --image: on first use of --overlay on this node, fill it from this saved overlay (strata overlay pull)")
	node := fs.String("node", envDefault("node", ""), "with --pull: this node's sub-overlay")
	activityFile := fs.String("activity-file", "", "keep the mount's request counters in this file (read by the boot agent for power saving)")
	noSquash := fs.Bool("no-root-squash", false, "with --tenant-token: let root act as root (by default it acts as nobody, 65534)")
	if err := parse(fs, args, 1, 1, "mount [flags] MOUNTPOINT\n       strata mount [flags] --image NAME:TAG --overlay DIR MOUNTPOINT"); err != nil {
		return err
	}
	if (*image == "") != (*overlay == "") {
		return usageErr("--image and --overlay go together")
	}
	if *pull == "" && *node != "" || *pull != "" && *image == "" {
		return usageErr("--pull goes with --image, and --node with --pull")
	}
	if *cacheSize < 0 {
		return usageErr("--cache-size must not be negative")
	}
	if o.LockTTL < time.Second || o.LockTTL > 10*time.Minute {
		return usageErr("--lock-ttl %v: want 1s to 10m", o.LockTTL)
	}
	c, err := cf.openWith(func(cfg *client.Config) { cfg.CacheDir, cfg.CacheBytes = *cacheDir, *cacheSize })
	if err != nil {
		return err
	}
	defer c.Close()
	log, _ := newLogger(stderr, *cf.level)
	o.Logger = log
	if *activityFile != "" {
		o.Activity = &fuse.Activity{}
		go writeActivity(ctx, o.Activity, *activityFile, log)
	}
	o.RootSquash = *cf.tenantToken != "" && !*noSquash
	if *image != "" {
		return mountImage(ctx, c, imageMount{image: *image, dir: *overlay, mp: fs.Arg(0), pull: *pull, node: *node}, o, stdout, log)
	}
	m, err := fuse.Mount(ctx, c, fs.Arg(0), o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "strata mounted on %s (Ctrl-C or 'strata umount %s' unmounts)\n", m.Mountpoint(), m.Mountpoint())
	return serveMount(ctx, m, log)
}

// serveMount runs until the mount goes away from outside, or ctx ends
// (SIGINT/SIGTERM), in which case it unmounts.
func serveMount(ctx context.Context, m *fuse.FS, log *slog.Logger) error {
	done := make(chan struct{})
	go func() {
		m.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	return unmountPatiently(m, done, log)
}

// unmountPatiently unmounts, retrying for a while when the mount is busy
// (a process still has a file open there), then detaches it lazily so
// that the daemon never exits with the mount left dangling.
func unmountPatiently(m *fuse.FS, done <-chan struct{}, log *slog.Logger) error {
	var err error
	for try := 0; try < 20; try++ {
		if err = m.Unmount(); err == nil {
			<-done
			return nil
		}
		log.Warn("unmount failed; retrying", "err", err)
		time.Sleep(250 * time.Millisecond)
	}
	log.Error("mount still busy; detaching it lazily", "mountpoint", m.Mountpoint())
	if lerr := syscall.Unmount(m.Mountpoint(), syscall.MNT_DETACH); lerr != nil {
		return fmt.Errorf("unmount %s: %w (lazy unmount: %v)", m.Mountpoint(), err, lerr)
	}
	<-done
	return nil
}

func runUmount(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("umount", stderr)
	lazy := fs.Bool("l", false, "detach now, clean up when no longer busy")
	if err := parse(fs, args, 1, -1, "umount [-l] MOUNTPOINT..."); err != nil {
		return err
	}
	var errs []error
	for _, mp := range fs.Args() {
		if err := umount(mp, *lazy); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// umount unmounts one Strata mount: directly as root, through fusermount3
// otherwise. For an image mount it takes down the overlay, then the image
// under it.
func umount(mp string, lazy bool) error {
	abs, err := filepath.Abs(mp)
	if err != nil {
		return err
	}
	m, ok := strataMount(abs)
	if !ok {
		return fmt.Errorf("%s is not a Strata mount", abs)
	}
	if err := umountOne(abs, lazy); err != nil {
		return err
	}
	if m.lower != "" {
		if _, ok := strataMount(m.lower); ok {
			return umountOne(m.lower, lazy)
		}
	}
	return nil
}

func umountOne(abs string, lazy bool) error {
	flags := 0
	if lazy {
		flags = syscall.MNT_DETACH
	}
	if err := syscall.Unmount(abs, flags); err == nil {
		return nil
	} else if !errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("unmount %s: %w", abs, err)
	}
	args := []string{"-u", abs}
	if lazy {
		args = []string{"-uz", abs}
	}
	if out, err := exec.Command("fusermount3", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("fusermount3 %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// isStrataMount looks mp up in /proc/mounts.
func isStrataMount(mp string) bool {
	_, ok := strataMount(mp)
	return ok
}

// mountLine is what umount needs of a Strata mount: for an image mount's
// overlay, the FUSE mount of the image below it.
type mountLine struct{ lower string }

// strataMount finds mp in /proc/mounts: a Strata FUSE mount, or the
// overlayfs of an image mount (source "strata-overlay").
func strataMount(mp string) (mountLine, bool) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return mountLine{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != mp {
			continue
		}
		switch {
		case strings.HasPrefix(f[2], "fuse") && strings.HasPrefix(f[0], "strata"):
			return mountLine{}, true
		case f[2] == "overlay" && f[0] == "strata-overlay":
			for _, o := range strings.Split(f[3], ",") {
				if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
					return mountLine{lower: v}, true
				}
			}
			return mountLine{}, true
		}
	}
	return mountLine{}, false
}

// mountDev mounts the dev cluster at mp, with a chunk cache in cacheDir;
// the returned function unmounts it.
func mountDev(ctx context.Context, metaAddrs []string, mp, cacheDir string, id *pki.Identity, log *slog.Logger) (func(), error) {
	c, err := client.New(client.Config{MetaAddrs: metaAddrs, Logger: log, CacheDir: cacheDir, TLS: id})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		c.Close()
		return nil, err
	}
	o := fuse.DefaultOptions()
	o.Logger = log
	m, err := fuse.Mount(ctx, c, mp, o)
	if err != nil {
		c.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		m.Wait()
		close(done)
	}()
	return func() {
		select {
		case <-done:
		default:
			if err := unmountPatiently(m, done, log); err != nil {
				log.Error("unmount dev mount", "err", err)
			}
		}
		c.Close()
	}, nil
}
