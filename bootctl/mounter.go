package bootctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// MountSpec is what the boot agent mounts: an image with a node-local
// overlay directory, at a mountpoint.
type MountSpec struct {
	Meta       string // metadata service address(es)
	Image      string // NAME:TAG
	OverlayDir string // local upper layer
	Mountpoint string
	// LocalRoot is the node's local overlay directory: any mount below it
	// at boot is a leftover of an earlier boot (a simulated power-off does
	// not clear mounts the way a real one does).
	LocalRoot string
	// ActivityFile is where the mount keeps its request counters
	// (MountActivity), for the agent's check-ins; "" for none.
	ActivityFile string
}

// MountActivity is what a mount reports of its use: the requests it
// served for programs (strata mount --activity-file), and when the latest
// arrived (on the node's clock).
type MountActivity struct {
	Requests uint64    `json:"requests"`
	Last     time.Time `json:"last"`
}

// ReadMountActivity reads an activity file ("no activity yet" when the
// mount has not written it).
func ReadMountActivity(path string) (MountActivity, error) {
	var ma MountActivity
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ma, nil
	}
	if err != nil {
		return ma, fmt.Errorf("bootctl: mount activity: %w", err)
	}
	if err := json.Unmarshal(b, &ma); err != nil {
		return ma, fmt.Errorf("bootctl: mount activity %s: %w", path, err)
	}
	return ma, nil
}

// Mounter mounts a MountSpec. The agent depends only on this interface so
// that the image mount (`strata mount --image`) can be swapped in without
// touching the agent.
type Mounter interface {
	Mount(ctx context.Context, spec MountSpec) (Mounted, error)
}

// Mounted is a live mount.
type Mounted interface {
	// Done is closed when the mount went away by itself (the mount
	// process died).
	Done() <-chan struct{}
	Unmount() error
}

// ExecMounter runs a mount daemon as a child process (argv from Argv) and
// waits until the kernel shows the mountpoint mounted.
type ExecMounter struct {
	Argv    func(MountSpec) []string
	Env     []string
	Timeout time.Duration // until mounted; default 60 s
	Log     *slog.Logger
}

// ImageMountArgv is the image mount of the image branch:
// strata mount --meta M --image NAME:TAG --overlay DIR MOUNTPOINT.
func ImageMountArgv(strata string) func(MountSpec) []string {
	return func(s MountSpec) []string {
		return mountArgv(strata, s, "--image", s.Image, "--overlay", s.OverlayDir)
	}
}

// WholeFSMountArgv is the stand-in used until the image mount exists: the
// whole file system, in which the agent then checks that the image is
// there (see AgentConfig.ImageRoot).
func WholeFSMountArgv(strata string) func(MountSpec) []string {
	return func(s MountSpec) []string {
		return mountArgv(strata, s)
	}
}

// mountArgv is `strata mount` of spec s with extra flags.
func mountArgv(strata string, s MountSpec, extra ...string) []string {
	argv := append([]string{strata, "mount", "--meta", s.Meta, "--cache-dir", ""}, extra...)
	if s.ActivityFile != "" {
		argv = append(argv, "--activity-file", s.ActivityFile)
	}
	return append(argv, s.Mountpoint)
}

func (m ExecMounter) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

type execMount struct {
	cmd  *exec.Cmd
	mp   string
	done chan struct{}
}

// Mount starts the mount process and waits for the mount.
func (m ExecMounter) Mount(ctx context.Context, spec MountSpec) (Mounted, error) {
	argv := m.Argv(spec)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), m.Env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := m.detachStale(spec); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.Mountpoint, 0o755); err != nil {
		return nil, fmt.Errorf("bootctl: mountpoint: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bootctl: start %s: %w", argv[0], err)
	}
	em := &execMount{cmd: cmd, mp: spec.Mountpoint, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(em.done) }()
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for !IsMounted(spec.Mountpoint) {
		select {
		case <-em.done:
			return nil, fmt.Errorf("bootctl: %s exited before mounting %s", strings.Join(argv[:2], " "), spec.Mountpoint)
		case <-ctx.Done():
			_ = em.Unmount()
			return nil, fmt.Errorf("bootctl: mount %s: %w", spec.Mountpoint, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = em.Unmount()
			return nil, fmt.Errorf("bootctl: %s not mounted after %v", spec.Mountpoint, timeout)
		}
	}
	return em, nil
}

func (em *execMount) Done() <-chan struct{} { return em.done }

// Unmount asks the mount process to unmount and exit (SIGTERM), then
// kills it if it does not within 10 s.
func (em *execMount) Unmount() error {
	_ = em.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-em.done:
	case <-time.After(10 * time.Second):
		_ = em.cmd.Process.Kill()
		<-em.done
		_ = syscall.Unmount(em.mp, syscall.MNT_DETACH)
		return errors.New("bootctl: mount process did not exit on SIGTERM; killed and detached")
	}
	return nil
}

// detachStale detaches mounts left at the mountpoint and inside the
// overlay directory (the image's FUSE lower) by a mount process that died
// with its node (a power-off): FUSE answers ENOTCONN there until then.
func (m ExecMounter) detachStale(spec MountSpec) error {
	var stale []string
	for _, mp := range mountpoints() {
		if mp == spec.Mountpoint {
			stale = append([]string{mp}, stale...) // the overlay first
		} else if spec.LocalRoot != "" && strings.HasPrefix(mp, spec.LocalRoot+"/") {
			stale = append(stale, mp)
		}
	}
	for _, mp := range stale {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("bootctl: detach stale mount at %s: %w", mp, err)
		}
		m.log().Warn("detached a stale mount", "mountpoint", mp)
	}
	return nil
}

// IsMounted reports whether mp is a mountpoint, from /proc/self/mountinfo.
func IsMounted(mp string) bool {
	for _, p := range mountpoints() {
		if p == mp {
			return true
		}
	}
	return false
}

// mountpoints lists the mountpoints of /proc/self/mountinfo.
func mountpoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline
// and backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
