package netns_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/ipmisim"
	"github.com/strata-hpc/strata/internal/netns"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// watchdogNet is 3 metadata hosts and a spare, each a network namespace
// whose power is a simulated BMC (ipmi_sim), and a controller host running
// the BMCs (on its loopback) and `strata bootctl`. Power-on runs `strata
// meta` inside the node's namespace, with the dedicated service IP.
type watchdogNet struct {
	t      *testing.T
	net    *netns.Net
	bin    string
	dir    string
	key    string
	tls    string        // TLS directory (a CA of this test, a certificate per role)
	hosts  []*netns.Host // m1..m4; m4 is the spare
	bmcs   map[string]*ipmisim.BMC
	ctl    *netns.Host
	client *netns.Host
	meta   string // every metaserver's own address (the controller's --meta)
}

func newWatchdogNet(t *testing.T) *watchdogNet {
	if !ipmisim.Available() {
		t.Skip("ipmi_sim not installed (scripts/install-deps.sh)")
	}
	n := netns.New(t, "10.77.0.0/24")
	w := &watchdogNet{t: t, net: n, bin: netns.StrataBinary(t), dir: t.TempDir(), bmcs: map[string]*ipmisim.BMC{}}
	w.key = filepath.Join(w.dir, "bmc.key")
	w.tls = filepath.Join(w.dir, "tls")
	if err := testcluster.MakeTLSDir(filepath.Join(w.dir, "ca"), w.tls); err != nil {
		t.Fatal(err)
	}
	if _, err := bootctl.WriteKeyFile(w.key, false); err != nil {
		t.Fatal(err)
	}
	var peers, addrs []string
	for i := 1; i <= 4; i++ {
		h := n.AddHost(fmt.Sprintf("m%d", i))
		w.hosts = append(w.hosts, h)
		addrs = append(addrs, h.Addr(grpcPort))
		if i <= 3 {
			peers = append(peers, h.Name+"="+h.Addr(raftPort))
		}
	}
	w.meta = strings.Join(addrs, ",")
	w.ctl = n.AddHost("ctl")
	w.client = n.AddHost("client")
	for i, h := range w.hosts {
		args := []string{"ip", "netns", "exec", h.NS, w.bin, "meta", "--tls-dir", w.tls, "--id", h.Name, "--dir", filepath.Join(w.dir, h.Name),
			"--raft-addr", h.Addr(raftPort), "--grpc-addr", h.Addr(grpcPort),
			"--heartbeat-timeout", "300ms", "--election-timeout", "300ms", "--leader-lease", "150ms",
			"--service-ip", serviceIP + "/24", "--service-iface", "eth0", "--log-level", "warn"}
		if i < 3 {
			args = append(args, "--peers", strings.Join(peers, ","))
		}
		w.bmcs[h.Name] = ipmisim.Start(t, ipmisim.Options{Node: args, Password: "pw-" + h.Name, NetNS: w.ctl.NS})
	}
	// Registered after the BMCs' cleanups, so it runs before them: what
	// each node and the controller saw, when the test failed.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, h := range w.hosts {
			log, _ := os.ReadFile(filepath.Join(w.bmcs[h.Name].Dir, "node.log"))
			t.Logf("--- %s node.log (last 2 KB):\n%s", h.Name, tail(string(log), 2048))
		}
		out, _ := w.strata(w.client, "status", "--meta", w.meta)
		t.Logf("--- status:\n%s", out)
	})
	return w
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// strata runs the CLI on host h.
func (w *watchdogNet) strata(h *netns.Host, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Exec(ctx, w.bin, append(args, "--tls-dir", w.tls)...)
	return string(out), err
}

// register adds the 4 nodes to the inventory, from the controller host.
func (w *watchdogNet) register() {
	for i, h := range w.hosts {
		b := w.bmcs[h.Name]
		pwFile := filepath.Join(w.dir, "pw-"+h.Name)
		if err := os.WriteFile(pwFile, []byte(b.Password), 0o600); err != nil {
			w.t.Fatal(err)
		}
		role := "metadata"
		if i == 3 {
			role = "spare"
		}
		out, err := w.strata(w.ctl, "node", "add", h.Name, "--meta", w.meta, "--bmc-key-file", w.key,
			"--mac", fmt.Sprintf("02:00:00:00:07:%02x", i+1), "--bmc", b.Addr(), "--bmc-user", b.User, "--bmc-password-file", pwFile,
			"--role", role, "--meta-id", h.Name, "--meta-raft", h.Addr(raftPort), "--meta-grpc", h.Addr(grpcPort))
		if err != nil {
			w.t.Fatalf("node add %s: %v\n%s", h.Name, err, out)
		}
	}
}

// ipmi runs ipmitool against host's BMC, from the controller host.
func (w *watchdogNet) ipmi(host string, args ...string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := w.bmcs[host].Ipmitool(ctx, args...); err != nil {
		w.t.Fatalf("ipmitool %s: %v\n%s", host, err, out)
	}
}

// leader is the leader `strata status` names through the service IP.
func (w *watchdogNet) leader(not string) string {
	w.t.Helper()
	var out string
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err = w.strata(w.client, "status", "--meta", serviceIP+":7400")
		if m := leaderRE.FindStringSubmatch(out); err == nil && m != nil && m[1] != not {
			return m[1]
		}
	}
	w.t.Fatalf("no leader (other than %q) through the service IP: %v\n%s", not, err, out)
	return ""
}

// onlyHolder waits until id alone (of the running metaservers) holds the
// service IP.
func (w *watchdogNet) onlyHolder(id string) {
	w.t.Helper()
	waitFor(w.t, id+" alone holding "+serviceIP, 30*time.Second, func() bool {
		for _, h := range w.hosts {
			if w.bmcs[h.Name].NodePID() == 0 {
				continue
			}
			if holdsIP(w.t, h) != (h.Name == id) {
				return false
			}
		}
		return true
	})
}

// events counts the watchdog events of kind about member that `strata
// bootctl status` shows.
func (w *watchdogNet) events(kind, member string) int {
	out, err := w.strata(w.client, "bootctl", "status", "--events", "100", "--meta", serviceIP+":7400")
	if err != nil {
		return -1
	}
	re := regexp.MustCompile(`(?m)^\S+\s+` + regexp.QuoteMeta(kind) + `\s+\S+\s+` + regexp.QuoteMeta(member) + `\s`)
	return len(re.FindAllString(out, -1))
}

func (w *watchdogNet) waitEvent(kind, member string, before int, d time.Duration) {
	w.t.Helper()
	start := time.Now()
	waitFor(w.t, fmt.Sprintf("watchdog event %s of %s", kind, member), d, func() bool {
		time.Sleep(300 * time.Millisecond)
		return w.events(kind, member) > before
	})
	w.t.Logf("%s %s after %v", kind, member, time.Since(start).Round(100*time.Millisecond))
}

// TestWatchdogWithServiceIP: metaservers in namespaces of their own, each
// powered by an ipmi_sim BMC, serve one dedicated service IP that the
// leader holds. A client workload that knows only the service IP runs
// throughout. The leader's machine loses power: the boot controller's
// watchdog power-cycles it, it rejoins, and the IP stays with whoever
// leads. Then the leader's machine dies for good: the watchdog
// power-cycles it, and when it does not come back, powers on the spare,
// adds it as a non-voter, promotes it once caught up and removes the dead
// voter. The service IP is with the leader alone at every check, and the
// client saw no error; every file it made reads back.
func TestWatchdogWithServiceIP(t *testing.T) {
	w := newWatchdogNet(t)
	for _, h := range w.hosts[:3] {
		w.ipmi(h.Name, "chassis", "power", "on")
	}
	first := w.leader("")
	w.onlyHolder(first)
	w.register()
	w.ctl.Start(w.bin, "bootctl", "--tls-dir", w.tls, "--meta", w.meta, "--listen", w.ctl.Addr(7480), "--id", "ctl0",
		"--service-meta", serviceIP+":7400", "--bmc-key-file", w.key, "--lease-ttl", "6s",
		"--probe-every", "300ms", "--probe-timeout", "300ms", "--fail-after", "2", "--rejoin-timeout", "10s")
	stop := filepath.Join(w.dir, "stop-workload")
	work := w.client.Start(os.Args[0], helperArg, "meta-workload", serviceIP+":7400", stop, w.tls)
	t.Cleanup(func() { os.WriteFile(stop, nil, 0o644) })
	waitFor(t, "the boot controller active", 30*time.Second, func() bool {
		out, _ := w.strata(w.client, "bootctl", "status", "--meta", serviceIP+":7400")
		return strings.Contains(out, "boot controller: active ctl0")
	})

	// 1. The leader's machine loses power; the watchdog power-cycles it.
	cycles, rejoins := w.events("power-cycle", first), w.events("rejoined", first)
	w.ipmi(first, "chassis", "power", "off")
	next := w.leader(first)
	w.onlyHolder(next)
	w.waitEvent("power-cycle", first, cycles, 30*time.Second)
	w.waitEvent("rejoined", first, rejoins, 60*time.Second)
	w.onlyHolder(w.leader(""))

	// 2. The leader's machine dies and will not boot again.
	victim := w.leader("")
	if err := w.bmcs[victim].SetNode([]string{"false"}, nil); err != nil {
		t.Fatal(err)
	}
	cycles = w.events("power-cycle", victim)
	w.ipmi(victim, "chassis", "power", "off")
	next = w.leader(victim)
	w.onlyHolder(next)
	w.waitEvent("power-cycle", victim, cycles, 30*time.Second)
	w.waitEvent("replaced", "m4", 0, 90*time.Second)
	out, err := w.strata(w.client, "status", "--meta", serviceIP+":7400")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nonvoter-added", "caught-up", "voter-added", "voter-removed"} {
		if !strings.Contains(out, want) {
			t.Errorf("status after the replacement lacks %q:\n%s", want, out)
		}
	}
	var voters []string
	for _, m := range memberRE.FindAllStringSubmatch(out, -1) {
		if strings.Contains(m[2], "non-voter") {
			t.Errorf("%s is still a non-voter:\n%s", m[1], out)
		}
		voters = append(voters, m[1])
	}
	if v := strings.Join(voters, ","); len(voters) != 3 || !strings.Contains(v, "m4") || strings.Contains(v, victim) {
		t.Errorf("voters after the replacement: %s; want 3 with m4 and without %s\n%s", v, victim, out)
	}
	w.onlyHolder(w.leader(""))
	time.Sleep(time.Second) // a little more workload on the new voter set

	// The client knew only the service IP and saw no error.
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := work.Wait(ctx); err != nil {
		t.Fatalf("workload: %v\n%s", err, work.Tail(20))
	}
	var res workloadResult
	lines := strings.Split(strings.TrimSpace(work.Output()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("workload result: %v\n%s", err, work.Tail(20))
	}
	t.Logf("workload through %s: %+v", serviceIP, res)
	if res.Errors != 0 || res.Bad != 0 || res.Made < 20 {
		t.Errorf("workload: %d made, %d errors (last: %s), %d did not read back", res.Made, res.Errors, res.LastError, res.Bad)
	}
}

var memberRE = regexp.MustCompile(`(?m)^(m\d)\s+\S+:7410\s+\S+:7400\s+(.*)$`)

type workloadResult struct {
	Made      int    `json:"made"`
	Errors    int    `json:"errors"`
	LastError string `json:"last_error,omitempty"`
	Bad       int    `json:"bad"`
}

// metaWorkload is the test binary's "meta-workload ADDR STOPFILE TLSDIR" helper:
// it creates files with an xattr through the metadata service at ADDR
// until STOPFILE exists, then reads every one back and prints the result
// as JSON.
func metaWorkload(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: meta-workload ADDR STOPFILE TLSDIR")
		return 2
	}
	id, err := pki.Load(args[2], pki.RoleClient, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := client.New(client.Config{MetaAddrs: []string{args[0]}, TLS: id, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err = c.MkdirAll(ctx, "/work", 0o755)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var res workloadResult
	var made []string
	for i := 0; ; i++ {
		if _, err := os.Stat(args[1]); err == nil {
			break
		}
		p := fmt.Sprintf("/work/f%d", i)
		if err := createWithXattr(c, p); err != nil {
			res.Errors++
			res.LastError = err.Error()
			continue
		}
		made = append(made, p)
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range made {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		attr, err := c.Stat(ctx, p)
		var v []byte
		if err == nil {
			v, err = c.GetXattr(ctx, attr.GetIno(), "user.v")
		}
		cancel()
		if err != nil || string(v) != p {
			res.Bad++
		}
	}
	res.Made = len(made)
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

func createWithXattr(c *client.Client, p string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir, err := c.Stat(ctx, "/work")
	if err != nil {
		return err
	}
	attr, err := c.Create(ctx, dir.GetIno(), filepath.Base(p), 0o644)
	if err != nil {
		return err
	}
	return c.SetXattr(ctx, attr.GetIno(), "user.v", []byte(p), 0)
}
