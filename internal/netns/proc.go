package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// logTailLines is how much of each process's log a failed test shows.
const logTailLines = 40

// Proc is a process running inside a host.
type Proc struct {
	Name string // host/first-argument#n, e.g. "m1/meta#1"
	Host *Host
	Log  string // file holding its stdout and stderr

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // what Wait returned; set before done closes
}

// Command returns an unstarted command that runs path with args inside the
// host, for callers that need more control than Start or Exec give. The
// environment is the test's, minus STRATA_* variables, so that a
// developer's settings cannot change what a test starts.
func (h *Host) Command(ctx context.Context, path string, args ...string) *exec.Cmd {
	// ip netns exec switches namespace and then execs path, so the process
	// started is path itself: signals reach it directly.
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, path}, args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STRATA_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A group of its own, so that signals reach any children too.
		Setpgid: true,
		// If the test binary dies without cleaning up (a panic on
		// timeout), its servers die with it.
		Pdeathsig: syscall.SIGKILL,
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Start runs path with args inside the host in the background, its output
// going to a log file. The process is killed when the test ends.
func (h *Host) Start(path string, args ...string) *Proc {
	n := h.net
	n.t.Helper()
	n.mu.Lock()
	name := fmt.Sprintf("%s/%s#%d", h.Name, firstOr(args, filepath.Base(path)), len(n.procs)+1)
	n.mu.Unlock()
	logPath := filepath.Join(n.dir, strings.NewReplacer("/", "-", "#", "-").Replace(name)+".log")
	f, err := os.Create(logPath)
	if err != nil {
		n.t.Fatalf("netns: start %s: %v", name, err)
	}
	// The child gets its own copy of the descriptor; ours is closed below.
	defer f.Close()
	cmd := h.Command(context.Background(), path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	p := &Proc{Name: name, Host: h, Log: logPath, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		n.t.Fatalf("netns: start %s: %v", name, err)
	}
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// Exec runs path with args inside the host and returns its combined
// output; the error names the host and command and wraps the exit status.
func (h *Host) Exec(ctx context.Context, path string, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := h.Command(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s: %s %s: %w", h.Name, filepath.Base(path), strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}

// Pid is the process id (and process group id).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Kill sends SIGKILL to the process (stopped or not) and waits until it is
// gone. Killing an exited process does nothing.
func (p *Proc) Kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("netns: %s (pid %d) survived SIGKILL for 10s", p.Name, p.Pid())
	}
}

// Pause stops the process with SIGSTOP: it keeps its sockets but answers
// nothing, like a machine that hangs.
func (p *Proc) Pause() error { return p.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (p *Proc) Resume() error { return p.signal(syscall.SIGCONT) }

// Terminate sends SIGTERM, asking the process to finish and exit.
func (p *Proc) Terminate() error { return p.signal(syscall.SIGTERM) }

// signal sends sig to the process group, unless the process has exited.
func (p *Proc) signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	err := syscall.Kill(-p.Pid(), sig)
	if err != nil && !errors.Is(err, syscall.ESRCH) { // ESRCH: exited meanwhile
		return fmt.Errorf("netns: %s to %s (pid %d): %w", sig, p.Name, p.Pid(), err)
	}
	return nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to end and returns how it ended (nil for exit
// status 0), or ctx's error.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("netns: %s: %w", p.Name, p.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("netns: waiting for %s: %w", p.Name, ctx.Err())
	}
}

// Status is "running" or how the process ended.
func (p *Proc) Status() string {
	if !p.Exited() {
		return "running"
	}
	if p.err != nil {
		return p.err.Error()
	}
	return "exited 0"
}

// Output returns everything the process has written so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(netns: reading %s: %v)", p.Log, err)
	}
	return string(b)
}

// Tail returns the last n lines of the output.
func (p *Proc) Tail(n int) string {
	lines := strings.SplitAfter(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

func firstOr(args []string, def string) string {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0]
	}
	return def
}
