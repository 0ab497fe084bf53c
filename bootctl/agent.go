package bootctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-hpc/strata/client"
)

// AgentConfig configures the boot agent of one node.
type AgentConfig struct {
	// Cmdline is the kernel command line (from /proc/cmdline or a file).
	// When empty and IPXEURL is set, the agent fetches its iPXE script the
	// way the firmware would and takes the kernel line's arguments: the
	// simulated PXE boot of the tests.
	Cmdline string
	IPXEURL string // e.g. http://bootctl:7480/boot/ipxe
	// MACs are the node's MAC addresses (default: /sys/class/net/*/address).
	MACs []string
	// OverlayRoot holds the node's overlays: OverlayRoot/OVERLAY/NODE.
	OverlayRoot string
	Mountpoint  string
	Mounter     Mounter
	// ImageRoot, when set, is where the mounted tree must show the image
	// (ImageRoot/NAME/TAG): the check of the whole-FS stand-in mount.
	ImageRoot string
	// BusyFile: while it exists the node counts as busy (a job lease),
	// which keeps power saving away.
	BusyFile  string
	Heartbeat time.Duration // check-in refresh; default 5 s
	Logger    *slog.Logger
	// NewClient opens the client to the metadata service named on the
	// command line (to find the node by its MAC).
	NewClient func(meta []string) (*client.Client, error)
	// TLS, when set, is the client configuration of the agent's HTTPS
	// calls to the boot controller (iPXE script, check-ins).
	TLS *tls.Config
}

// Agent is a running boot agent.
type Agent struct {
	cfg    AgentConfig
	log    *slog.Logger
	params BootParams
	ci     CheckIn
	http   *http.Client
}

// RunAgent boots the node: reads its parameters, finds itself by MAC,
// mounts its image with its overlay, checks in, and keeps checking in
// until ctx ends, when it unmounts.
func RunAgent(ctx context.Context, cfg AgentConfig) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "boot-agent"), http: &http.Client{Timeout: 10 * time.Second}}
	if cfg.TLS != nil {
		a.http.Transport = &http.Transport{TLSClientConfig: cfg.TLS}
	}
	bootTime := time.Now().UTC()
	m, err := a.boot(ctx)
	if err != nil {
		a.log.Error("boot failed", "err", err)
		a.ci.Error = err.Error()
		a.ci.BootTime = bootTime
		_ = a.checkIn(ctx) // tell the controller why, if it can be reached
		return err
	}
	defer func() {
		if err := m.Unmount(); err != nil {
			a.log.Error("unmount", "err", err)
		}
	}()
	a.ci.BootTime, a.ci.LastActive = bootTime, bootTime
	return a.serve(ctx, m)
}

// boot runs every step up to a live mount.
func (a *Agent) boot(ctx context.Context) (Mounted, error) {
	var err error
	if a.params, err = a.readParams(ctx); err != nil {
		return nil, err
	}
	p := a.params
	a.ci = CheckIn{Node: p.Node, Image: p.Image, Overlay: p.Overlay, Generation: p.Generation}
	if err := a.identify(ctx); err != nil {
		return nil, err
	}
	overlay := filepath.Join(a.cfg.OverlayRoot, p.Overlay, p.Node)
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		return nil, fmt.Errorf("bootctl: overlay dir: %w", err)
	}
	spec := MountSpec{Meta: p.Meta, Image: p.Image, OverlayDir: overlay, Mountpoint: a.cfg.Mountpoint, LocalRoot: a.cfg.OverlayRoot,
		ActivityFile: a.activityFile()}
	if err := os.Remove(spec.ActivityFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bootctl: stale activity file: %w", err)
	}
	m, err := a.cfg.Mounter.Mount(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := a.checkImage(); err != nil {
		_ = m.Unmount()
		return nil, err
	}
	a.log.Info("image mounted", "node", p.Node, "image", p.Image, "overlay", overlay, "mountpoint", a.cfg.Mountpoint)
	return m, nil
}

// readParams gets the kernel arguments: the command line given, or the
// ones of the iPXE script served for this node's MAC.
func (a *Agent) readParams(ctx context.Context) (BootParams, error) {
	cmdline := a.cfg.Cmdline
	if cmdline == "" && a.cfg.IPXEURL != "" {
		macs, err := a.macs()
		if err != nil {
			return BootParams{}, err
		}
		if cmdline, err = a.fetchKernelLine(ctx, macs[0]); err != nil {
			return BootParams{}, err
		}
	}
	return ParseCmdline(cmdline)
}

// fetchKernelLine does what iPXE does: GET the script, take its kernel line.
func (a *Agent) fetchKernelLine(ctx context.Context, mac string) (string, error) {
	u := a.cfg.IPXEURL + "?mac=" + url.QueryEscape(mac)
	var lastErr error
	for try := 0; try < 30 && ctx.Err() == nil; try++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := a.http.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("bootctl: %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
			}
			for _, line := range strings.Split(string(body), "\n") {
				if rest, ok := strings.CutPrefix(line, "kernel "); ok {
					return rest, nil
				}
			}
			return "", fmt.Errorf("bootctl: the boot script for %s has no kernel line:\n%s", mac, body)
		}
		lastErr = err
		time.Sleep(500 * time.Millisecond)
	}
	return "", fmt.Errorf("bootctl: fetch boot script: %w", errors.Join(lastErr, ctx.Err()))
}

func (a *Agent) macs() ([]string, error) {
	macs := a.cfg.MACs
	if len(macs) == 0 {
		macs = localMACs()
	}
	var out []string
	for _, m := range macs {
		if n, err := NormalizeMAC(m); err == nil && n != "00:00:00:00:00:00" {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("bootctl: this machine has no MAC address to identify itself by")
	}
	return out, nil
}

func localMACs() []string {
	paths, _ := filepath.Glob("/sys/class/net/*/address")
	var out []string
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			out = append(out, strings.TrimSpace(string(b)))
		}
	}
	return out
}

// identify finds the node that owns one of this machine's MACs and checks
// that it is the node the command line names.
func (a *Agent) identify(ctx context.Context) error {
	macs, err := a.macs()
	if err != nil {
		return err
	}
	c, err := a.cfg.NewClient(strings.Split(a.params.Meta, ","))
	if err != nil {
		return fmt.Errorf("bootctl: metadata service %s: %w", a.params.Meta, err)
	}
	defer c.Close()
	st := NewStore(c, a.log)
	for _, mac := range macs {
		n, err := st.NodeByMAC(ctx, mac)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if n.Name != a.params.Node {
			return fmt.Errorf("bootctl: MAC %s belongs to node %s, but the boot parameters are for %s", mac, n.Name, a.params.Node)
		}
		a.ci.MAC = mac
		return nil
	}
	return fmt.Errorf("bootctl: none of this machine's MACs (%s) is registered", strings.Join(macs, ", "))
}

// checkImage verifies, for the whole-FS stand-in mount, that the image is
// where the catalog says it is.
func (a *Agent) checkImage() error {
	if a.cfg.ImageRoot == "" {
		return nil
	}
	name, tag, _ := strings.Cut(a.params.Image, ":")
	p := filepath.Join(a.cfg.Mountpoint, a.cfg.ImageRoot, name, tag)
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		return fmt.Errorf("bootctl: image %s not found in the mount (%s): %v", a.params.Image, p, err)
	}
	return nil
}

// serve checks in now and then every Heartbeat until ctx ends or the
// mount dies.
func (a *Agent) serve(ctx context.Context, m Mounted) error {
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	for {
		if a.busy() {
			a.ci.LastActive = time.Now().UTC()
		}
		if ma, err := ReadMountActivity(a.activityFile()); err != nil {
			a.log.Warn("mount activity", "err", err)
		} else {
			a.ci.MountRequests, a.ci.MountActiveAt = ma.Requests, ma.Last.UTC()
		}
		if err := a.checkIn(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("check-in failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.Done():
			return errors.New("bootctl: the image mount went away")
		case <-t.C:
		}
	}
}

// activityFile is where the node's mount keeps its request counters: in
// the node's local overlay root, beside its overlays (one boot at a time).
func (a *Agent) activityFile() string {
	return filepath.Join(a.cfg.OverlayRoot, ".mount-activity")
}

func (a *Agent) busy() bool {
	if a.cfg.BusyFile == "" {
		return false
	}
	_, err := os.Stat(a.cfg.BusyFile)
	return err == nil
}

// checkIn posts the check-in to the boot controller named on the command
// line, retrying briefly (a standby may be taking over).
func (a *Agent) checkIn(ctx context.Context) error {
	if a.params.Bootctl == "" {
		return errors.New("bootctl: no strata.bootctl on the command line; cannot check in")
	}
	body, _ := json.Marshal(a.ci)
	var err error
	for try := 0; try < 5; try++ {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, a.params.Bootctl+"/boot/checkin", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		var resp *http.Response
		if resp, err = a.http.Do(req); err == nil {
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			err = fmt.Errorf("check-in refused: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
			if resp.StatusCode < 500 {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return err
}
