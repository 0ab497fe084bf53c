// Package netns runs a multi-host Strata cluster on one Linux machine: each
// host is a network namespace of its own with one address, all hosts hang
// off a bridge that lives in a "switch" namespace, and every server is a
// real process started inside its host with `ip netns exec`. Tests get real
// raft and gRPC over veth links, and real faults: SIGKILL, SIGSTOP/SIGCONT
// and links cut at the switch.
//
// Nothing is attached to the machine's own network namespace: no interface,
// address, route or firewall rule there is created or changed. Namespace
// names carry a random id per Net, so test binaries may run in parallel,
// and everything (processes, namespaces, and with them the veths and the
// bridge) is removed when the test ends, passed or failed.
//
// `ip netns exec` also gives each process a mount namespace of its own (to
// remount /sys): a FUSE mount made by a process started in a host is seen
// only by processes that enter its mount namespace (nsenter -t PID -m).
//
// The test process itself never enters a namespace: namespaces belong to
// OS threads, not goroutines, so all work inside one is done by a child
// process (`ip -n NS ...`, `ip netns exec NS ...`).
//
// Usage:
//
//	n := netns.New(t, "10.77.0.0/24") // skips the test unless root with ip netns
//	bin := netns.StrataBinary(t)      // go build ./cmd/strata, once per test binary
//	h := n.AddHost("m1")              // namespace st<id>-m1, address 10.77.0.1
//	p := h.Start(bin, "meta", "--id", "m1", "--raft-addr", h.Addr(7410), ...)
//	out, err := n.AddHost("client").Exec(ctx, bin, "status", "--meta", ...)
//	p.Pause(); p.Resume(); p.Kill()
//	n.Partition(h); n.Heal(h)
//
// Call RemoveBuilds from TestMain after m.Run to delete the built binary.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Interface names inside the namespaces. They are private to each
// namespace, so they need no random part: the bridge and the switch-side
// veth ends live in the switch namespace, the host side is always eth0.
const (
	bridgeName = "br0"
	hostIf     = "eth0"
)

// hostNameRE keeps host names short enough for the switch-side interface
// name "v"+name (interface names are at most 15 bytes).
var hostNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// Net is one test network: a switch namespace with a bridge, and hosts.
type Net struct {
	t      testing.TB
	id     string // "st" + random hex: prefix of every namespace name
	prefix netip.Prefix
	dir    string // process logs
	Switch string // name of the switch namespace

	mu         sync.Mutex
	namespaces []string // created, deleted in reverse order
	hosts      []*Host
	procs      []*Proc
}

// Host is one machine of the test network.
type Host struct {
	Name string     // as given to AddHost
	NS   string     // network namespace name, for `ip netns exec`
	IP   netip.Addr // its only address
	port string     // switch-side veth end, in the switch namespace
	net  *Net
}

// Addr is IP:port on this host.
func (h *Host) Addr(port int) string {
	return netip.AddrPortFrom(h.IP, uint16(port)).String()
}

// Available reports why namespaces cannot be used here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("netns: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("netns: iproute2 not installed: %w", err)
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		return fmt.Errorf("netns: ip netns unavailable: %v: %s", err, out)
	}
	return nil
}

// New creates the switch namespace and its bridge for hosts addressed from
// subnet (IPv4, e.g. "10.77.0.0/24"; host N gets the Nth address). It
// skips the test when namespaces are unavailable and registers the
// teardown with t.Cleanup.
func New(t testing.TB, subnet string) *Net {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("skipping multi-host test: %v", err)
	}
	prefix, err := netip.ParsePrefix(subnet)
	if err != nil || !prefix.Addr().Is4() || prefix.Bits() > 30 {
		t.Fatalf("netns: subnet %q: want an IPv4 prefix of /30 or wider", subnet)
	}
	n := &Net{t: t, id: "st" + randomHex(3), prefix: prefix.Masked(), dir: t.TempDir()}
	n.Switch = n.id + "-sw"
	// Registered after t.TempDir, so it runs first: processes die before
	// their log directory is removed.
	t.Cleanup(n.close)
	if err := n.addNamespace(n.Switch); err != nil {
		t.Skipf("skipping multi-host test: %v", err)
	}
	n.must(n.ip(n.Switch, "link", "set", "lo", "up"))
	// STP stays off (the default): a port forwards as soon as it is up.
	n.must(n.ip(n.Switch, "link", "add", bridgeName, "type", "bridge"))
	n.must(n.ip(n.Switch, "link", "set", bridgeName, "up"))
	return n
}

// AddHost creates a host: its namespace (lo up), a veth pair whose other end
// is a port of the bridge, and the next address of the subnet. Names are
// lower-case letters and digits, at most 12, unique in the Net.
func (n *Net) AddHost(name string) *Host {
	n.t.Helper()
	if !hostNameRE.MatchString(name) {
		n.t.Fatalf("netns: host name %q: want [a-z][a-z0-9]{0,11}", name)
	}
	n.mu.Lock()
	for _, h := range n.hosts {
		if h.Name == name {
			n.mu.Unlock()
			n.t.Fatalf("netns: host %q exists", name)
		}
	}
	ip := n.prefix.Addr()
	for i := 0; i <= len(n.hosts); i++ {
		ip = ip.Next()
	}
	n.mu.Unlock()
	if !n.prefix.Contains(ip.Next()) { // the last address is the broadcast
		n.t.Fatalf("netns: subnet %s is full", n.prefix)
	}
	h := &Host{Name: name, NS: n.id + "-" + name, IP: ip, port: "v" + name, net: n}
	if err := n.addNamespace(h.NS); err != nil {
		n.t.Fatalf("netns: %v", err)
	}
	n.must(n.ip(h.NS, "link", "set", "lo", "up"))
	// The pair is made in the switch namespace and one end moved straight
	// into the host's, so it never appears in the machine's namespace.
	n.must(n.ip(n.Switch, "link", "add", h.port, "type", "veth", "peer", "name", hostIf, "netns", h.NS))
	n.must(n.ip(n.Switch, "link", "set", h.port, "master", bridgeName, "up"))
	n.must(n.ip(h.NS, "addr", "add", fmt.Sprintf("%s/%d", ip, n.prefix.Bits()), "dev", hostIf))
	n.must(n.ip(h.NS, "link", "set", hostIf, "up"))
	n.mu.Lock()
	n.hosts = append(n.hosts, h)
	n.mu.Unlock()
	return h
}

// Hosts returns the hosts in the order they were added.
func (n *Net) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Host(nil), n.hosts...)
}

// Partition cuts h off the network: its port on the bridge goes down, so
// nothing it sends arrives and nothing reaches it (its own loopback still
// works). Connections are not reset; they stall as on a real cut cable.
func (n *Net) Partition(h *Host) {
	n.t.Helper()
	n.must(n.ip(n.Switch, "link", "set", h.port, "down"))
}

// Heal reconnects a partitioned host.
func (n *Net) Heal(h *Host) {
	n.t.Helper()
	n.must(n.ip(n.Switch, "link", "set", h.port, "up"))
}

// addNamespace creates a namespace and remembers it for the teardown.
func (n *Net) addNamespace(name string) error {
	if err := run("ip", "netns", "add", name); err != nil {
		return err
	}
	n.mu.Lock()
	n.namespaces = append(n.namespaces, name)
	n.mu.Unlock()
	return nil
}

// ip runs `ip -n ns args...`.
func (n *Net) ip(ns string, args ...string) error {
	return run("ip", append([]string{"-n", ns}, args...)...)
}

func (n *Net) must(err error) {
	n.t.Helper()
	if err != nil {
		n.t.Fatalf("netns: %v", err)
	}
}

// close kills every process, shows the end of their logs if the test
// failed, and deletes the namespaces (which takes their veths and the
// bridge with them).
func (n *Net) close() {
	n.mu.Lock()
	procs, namespaces := n.procs, n.namespaces
	n.procs, n.namespaces = nil, nil
	n.mu.Unlock()
	for _, p := range procs {
		if err := p.Kill(); err != nil {
			n.t.Errorf("netns: teardown: %v", err)
		}
	}
	if n.t.Failed() {
		for _, p := range procs {
			n.t.Logf("--- %s: %s (last %d lines of %s)\n%s", p.Name, p.Status(), logTailLines, p.Log, p.Tail(logTailLines))
		}
	}
	for i := len(namespaces) - 1; i >= 0; i-- {
		if err := run("ip", "netns", "delete", namespaces[i]); err != nil {
			n.t.Errorf("netns: teardown: %v", err)
		}
	}
}

// run runs a command and returns its output in the error if it fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics rather)
	return hex.EncodeToString(b)
}
