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

// mountImage mounts image name at mp with the overlay in dir and serves it
// until ctx ends (SIGINT/SIGTERM) or the mount goes away, then takes down
// the overlay and the image mount.
func mountImage(ctx context.Context, c *client.Client, name, dir, mp string, o fuse.Options, stdout io.Writer, log *slog.Logger) error {
	ref, err := imagestore.ParseRef(name)
	if err != nil {
		return usageErr("--image: %v", err)
	}
	root, err := imagestore.New(c, log).Resolve(ctx, ref)
	if err != nil {
		return err
	}
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
