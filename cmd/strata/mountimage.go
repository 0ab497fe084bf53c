package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/fuse"
	"github.com/strata-hpc/strata/imagestore"
)

// imageMount is what `strata mount --image` was asked for.
type imageMount struct {
	image, dir, mp string
	pull, node     string // saved overlay to fill a new dir from
}

// mountImage mounts the image at mp with the overlay in dir and serves it
// until ctx ends (SIGINT/SIGTERM) or the mount goes away, then takes down
// the overlay and the image mount.
func mountImage(ctx context.Context, c *client.Client, req imageMount, o fuse.Options, stdout io.Writer, log *slog.Logger) error {
	ref, err := imagestore.ParseRef(req.image)
	if err != nil {
		return usageErr("--image: %v", err)
	}
	store := imagestore.New(c, log)
	root, err := store.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	if err := pullOnFirstUse(ctx, store, req, stdout); err != nil {
		return err
	}
	dir, mp := req.dir, req.mp
	o.AttrTimeout, o.EntryTimeout = 0, 0 // the image defaults: it never changes
	im, err := fuse.MountImage(ctx, c, mp, fuse.ImageOptions{RootIno: root.GetIno(), OverlayDir: dir, FUSE: o})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "image %s mounted on %s, changes in %s (Ctrl-C or 'strata umount %s' unmounts)\n", ref, im.Mountpoint(), dir, im.Mountpoint())
	done := make(chan struct{})
	go func() {
		im.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	return unmountImage(im, done, log)
}

// pullOnFirstUse fills an overlay directory that this node never used
// (no upper layer, no push state) from the saved overlay req.pull, so that
// a node comes back with its own changes on its next activation.
func pullOnFirstUse(ctx context.Context, store *imagestore.Store, req imageMount, stdout io.Writer) error {
	if req.pull == "" || imagestore.OverlayDirUsed(req.dir) {
		return nil
	}
	res, err := store.Pull(ctx, req.pull, req.node, req.dir, imagestore.PullOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "filled %s from overlay %s: %d entries\n", req.dir, req.pull, res.Entries)
	return nil
}

func unmountImage(im *fuse.ImageMount, done <-chan struct{}, log *slog.Logger) error {
	for try := 0; ; try++ {
		err := im.Unmount()
		if err == nil {
			<-done
			return nil
		}
		if try == 20 {
			log.Error("image mount still busy; detaching it lazily", "mountpoint", im.Mountpoint(), "err", err)
			if derr := im.Detach(); derr != nil {
				return fmt.Errorf("unmount %s: %w (lazy: %v)", im.Mountpoint(), err, derr)
			}
			<-done
			return nil
		}
		log.Warn("unmount failed; retrying", "err", err)
		time.Sleep(250 * time.Millisecond)
	}
}
