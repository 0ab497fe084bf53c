package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/fuse"
)

// writeActivity keeps path up to date with the mount's request counters
// (`strata mount --activity-file`): the boot agent, which starts the
// mount, reads it and reports it with its check-ins, for power saving.
// The file is replaced atomically every second when the count changed.
func writeActivity(ctx context.Context, a *fuse.Activity, path string, log *slog.Logger) {
	written := ^uint64(0)
	for {
		if n := a.Requests(); n != written {
			if err := saveActivity(path, bootctl.MountActivity{Requests: n, Last: a.Last()}); err != nil {
				log.Warn("activity file", "err", err)
			} else {
				written = n
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func saveActivity(path string, ma bootctl.MountActivity) error {
	b, err := json.Marshal(ma)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".activity-*")
	if err != nil {
		return fmt.Errorf("activity file: %w", err)
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("activity file: %w", err)
	}
	return nil
}
