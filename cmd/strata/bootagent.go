package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/pki"
)

func init() {
	register(command{name: "boot-agent", summary: "on a node: read the boot arguments, mount the image with its overlay, check in", run: runBootAgent})
}

func runBootAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("boot-agent", stderr)
	cmdlineFile := fs.String("cmdline-file", "/proc/cmdline", "kernel command line to read the strata.* arguments from")
	ipxeURL := fs.String("ipxe-url", "", "instead of a command line, fetch this node's iPXE script here as the firmware would (simulated PXE boot)")
	macs := fs.String("mac", envDefault("mac", ""), "this node's MAC addresses (default: every interface's)")
	overlayRoot := fs.String("overlay-root", "/var/lib/strata/overlays", "local directory holding the node's overlays")
	mountpoint := fs.String("mountpoint", "/run/strata/root", "where the image is mounted")
	standIn := fs.Bool("whole-fs-mount", false, "mount the whole file system and check that the image is in it under --image-root, instead of the image mount (a stand-in until strata mount --image exists)")
	imageRoot := fs.String("image-root", "/images", "with --whole-fs-mount: where images live (NAME/TAG)")
	busyFile := fs.String("busy-file", "", "while this file exists the node counts as busy (job lease; keeps power saving away)")
	heartbeat := fs.Duration("heartbeat", 5*time.Second, "how often the node checks in")
	level := fs.String("log-level", envDefault("log-level", "info"), "debug, info, warn or error")
	tf := addTLSFlags(fs, true)
	_, err := parseBoot(fs, args, 0, 0, "boot-agent [flags]")
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	id, err := tf.identity(pki.RoleClient, log)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("boot-agent: find own binary: %w", err)
	}
	cfg := bootctl.AgentConfig{
		IPXEURL: *ipxeURL, MACs: splitList(*macs), OverlayRoot: *overlayRoot, Mountpoint: *mountpoint,
		BusyFile: *busyFile, Heartbeat: *heartbeat, Logger: log,
		NewClient: func(meta []string) (*client.Client, error) {
			return client.New(client.Config{MetaAddrs: meta, Logger: log, TLS: id})
		},
	}
	if id != nil {
		cfg.TLS = id.ClientTLS(pki.RoleBootctl)
	}
	argv := bootctl.ImageMountArgv(self)
	if *standIn {
		argv, cfg.ImageRoot = bootctl.WholeFSMountArgv(self), *imageRoot
	}
	// The mount child gets the agent's TLS choice through the environment.
	cfg.Mounter = bootctl.ExecMounter{Argv: argv, Log: log, Env: tf.env()}
	if *ipxeURL == "" {
		b, err := os.ReadFile(*cmdlineFile)
		if err != nil {
			return fmt.Errorf("boot-agent: %w", err)
		}
		cfg.Cmdline = string(b)
	}
	return bootctl.RunAgent(ctx, cfg)
}
