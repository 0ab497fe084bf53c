// Package ipmisim runs simulated BMCs for tests: real `ipmi_sim` processes
// (Debian's openipmi) on loopback, each with its own configuration written
// into a temp dir, whose power-on starts a real node process and whose
// power-off kills it (SIGKILL to its process group: as abrupt as a real
// power-off, and ipmi_sim, which waits for its chassis script, never
// blocks on a node's clean-up; a soft off sends SIGTERM). Clients talk
// real IPMI v2.0 (lanplus) to them, with go-ipmi or ipmitool. See
// /work/shared/ipmi-sim.md for what was learnt about ipmi_sim.
package ipmisim

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

//go:embed chassis.sh
var chassisScript string

// Options shape one BMC.
type Options struct {
	// Host is a loopback address (default 127.0.0.1); Port 0 picks a free
	// UDP port.
	Host string
	Port int
	// User and Password of the BMC's admin user (default admin/password).
	User, Password string
	// Node is the command (argv) that power-on starts; default: a node
	// that only exists (sleep). Env is added to its environment.
	Node []string
	Env  []string
	// NetNS, when set, runs ipmi_sim (and Ipmitool) inside that network
	// namespace (`ip netns exec`), on its loopback: for multi-host tests
	// whose boot controller runs in a namespace (internal/netns).
	NetNS string
}

// BMC is one running ipmi_sim.
type BMC struct {
	Dir            string
	Host           string
	Port           int
	User, Password string
	NetNS          string

	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// Available reports whether ipmi_sim is installed (scripts/install-deps.sh
// installs it); tests skip with a clear message when it is not.
func Available() bool {
	_, err := exec.LookPath("ipmi_sim")
	return err == nil
}

// Start runs one BMC and stops it (node first) when the test ends.
func Start(t testing.TB, o Options) *BMC {
	t.Helper()
	if !Available() {
		t.Skip("ipmi_sim not installed (apt-get install openipmi; scripts/install-deps.sh)")
	}
	b, err := start(t, o)
	if err != nil {
		t.Fatalf("ipmisim: %v", err)
	}
	t.Cleanup(b.Stop)
	return b
}

func start(t testing.TB, o Options) (*BMC, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if !strings.HasPrefix(o.Host, "127.") {
		return nil, fmt.Errorf("refusing non-loopback address %s", o.Host)
	}
	if o.User == "" {
		o.User = "admin"
	}
	if o.Password == "" {
		o.Password = "password"
	}
	if o.Port == 0 {
		p, err := freeUDPPort(o.Host)
		if err != nil {
			return nil, err
		}
		o.Port = p
	}
	dir, err := os.MkdirTemp(t.TempDir(), "bmc-")
	if err != nil {
		return nil, err
	}
	b := &BMC{Dir: dir, Host: o.Host, Port: o.Port, User: o.User, Password: o.Password, NetNS: o.NetNS, t: t, done: make(chan struct{})}
	if err := b.writeConfig(o); err != nil {
		return nil, err
	}
	if err := b.SetNode(o.Node, o.Env); err != nil {
		return nil, err
	}
	return b, b.run()
}

// Addr is host:port of the BMC's LAN interface.
func (b *BMC) Addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

func (b *BMC) writeConfig(o Options) error {
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
	auths := "none md2 md5 straight"
	lan := fmt.Sprintf(`name "bmc-%s-%d"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_callback %[5]s
    allowed_auths_user %[5]s
    allowed_auths_operator %[5]s
    allowed_auths_admin %[5]s
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%[6]s/chassis.sh %[6]s"
  user 2 true "%[7]s" "%[8]s" admin 10 %[5]s
`, o.Host, o.Port, o.Host, o.Port, auths, b.Dir, o.User, o.Password)
	files := map[string]struct {
		body string
		mode os.FileMode
	}{
		"bmc.emu":    {emu, 0o644},
		"lan.conf":   {lan, 0o600},
		"chassis.sh": {chassisScript, 0o755},
	}
	for name, f := range files {
		if err := os.WriteFile(filepath.Join(b.Dir, name), []byte(f.body), f.mode); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return os.MkdirAll(filepath.Join(b.Dir, "state"), 0o755)
}

// SetNode changes what the next power-on starts (e.g. a node that fails
// to come back: []string{"false"}).
func (b *BMC) SetNode(argv, env []string) error {
	if len(argv) == 0 {
		argv = []string{"sleep", "2147483647"}
	}
	var sh strings.Builder
	sh.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&sh, "BMC_ADDR=%s BMC_PORT=%d BMC_DIR=%s\nexport BMC_ADDR BMC_PORT BMC_DIR\n", b.Host, b.Port, shellQuote(b.Dir))
	for _, e := range env {
		fmt.Fprintf(&sh, "export %s\n", shellQuote(e))
	}
	sh.WriteString("echo \"$(date +%s.%N) power on: $$\" >&2\nexec")
	for _, a := range argv {
		sh.WriteString(" " + shellQuote(a))
	}
	sh.WriteString("\n")
	p := filepath.Join(b.Dir, "node.sh")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(sh.String()), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// SetDelay makes the BMC answer chassis commands d late (a slow BMC).
func (b *BMC) SetDelay(d time.Duration) error {
	p := filepath.Join(b.Dir, "delay")
	if d <= 0 {
		return os.RemoveAll(p)
	}
	return os.WriteFile(p, []byte(fmt.Sprintf("%.3f", d.Seconds())), 0o644)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// run starts ipmi_sim with its console on a pipe: it logs to stdout and
// exits when the pipe closes, so it cannot outlive the test process.
func (b *BMC) run() error {
	log, err := os.Create(filepath.Join(b.Dir, "ipmi_sim.log"))
	if err != nil {
		return err
	}
	cmd := b.command("ipmi_sim", "-c", "lan.conf", "-f", "bmc.emu", "-s", filepath.Join(b.Dir, "state"))
	cmd.Dir = b.Dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if b.stdin, err = cmd.StdinPipe(); err != nil {
		log.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start ipmi_sim: %w", err)
	}
	b.cmd = cmd
	go func() { cmd.Wait(); log.Close(); close(b.done) }() //nolint:errcheck // exit status is in the log
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if udpBound(cmd.Process.Pid, b.Host, b.Port) {
			return nil
		}
		select {
		case <-b.done:
			out, _ := os.ReadFile(filepath.Join(b.Dir, "ipmi_sim.log"))
			return fmt.Errorf("ipmi_sim exited at start:\n%s", out)
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.Stop()
	return errors.New("ipmi_sim did not listen within 10 s")
}

// NodePID is the pid of the running node process, or 0 when powered off.
func (b *BMC) NodePID() int {
	raw, err := os.ReadFile(filepath.Join(b.Dir, "node.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || !Running(pid) {
		return 0
	}
	return pid
}

// Boots counts the node's power-ons so far.
func (b *BMC) Boots() int {
	raw, _ := os.ReadFile(filepath.Join(b.Dir, "boots"))
	return strings.Count(string(raw), "\n")
}

// Running reports whether pid is alive and not a zombie.
func Running(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// KillNode signals the node's process group behind the BMC's back (a
// crash, or SIGSTOP for a hung node). A node that dies reads as powered
// off: the simulator's power state is "the node process lives".
func (b *BMC) KillNode(sig syscall.Signal) {
	if pid := b.NodePID(); pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}

// Stop stops the node (its whole process group), then ipmi_sim. Safe to
// call twice.
func (b *BMC) Stop() {
	if pid := b.NodePID(); pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGCONT)
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for Running(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	if b.cmd == nil {
		return
	}
	b.stdin.Close()
	select {
	case <-b.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
	}
}

// freeUDPPort asks the kernel for a free UDP port on host.
func freeUDPPort(host string) (int, error) {
	c, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free UDP port: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// command runs name inside the BMC's namespace, if it has one (ip netns
// exec execs name, so the process started is name itself).
func (b *BMC) command(name string, args ...string) *exec.Cmd {
	if b.NetNS == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", b.NetNS, name}, args...)...)
}

// udpBound reports whether a UDP socket is bound at host:port in the
// network namespace of process pid, from /proc/PID/net/udp (addresses
// little-endian hex).
func udpBound(pid int, host string, port int) bool {
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return false
	}
	want := fmt.Sprintf(" %02X%02X%02X%02X:%04X ", ip[3], ip[2], ip[1], ip[0], port)
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/udp", pid))
	return err == nil && strings.Contains(string(raw), want)
}

// Ipmitool runs ipmitool against the BMC (always -C 3: without it every
// call waits ~10 s) and returns its output.
func (b *BMC) Ipmitool(ctx context.Context, args ...string) (string, error) {
	base := []string{"-I", "lanplus", "-C", "3", "-H", b.Host, "-p", strconv.Itoa(b.Port), "-U", b.User, "-P", b.Password}
	argv := append([]string{"ipmitool"}, append(base, args...)...)
	if b.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", b.NetNS}, argv...)
	}
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ipmitool %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// BootDevice is the boot device the chassis was last told to use.
func (b *BMC) BootDevice() string {
	raw, err := os.ReadFile(filepath.Join(b.Dir, "bootdev"))
	if err != nil {
		return "default"
	}
	return strings.TrimSpace(string(raw))
}
