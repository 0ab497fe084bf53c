package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/ipmisim"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// bootRig is a metadata cluster, a boot controller's HTTP server, and
// simulated nodes whose BMCs power real boot agents.
type bootRig struct {
	t     testing.TB
	tc    *testcluster.Cluster
	c     *client.Client
	st    *bootctl.Store
	url   string
	meta  string
	dir   string
	bmcs  map[string]*ipmisim.BMC
	mnts  map[string]string
	ovlys string
	logs  *lockedBuffer // the boot controller server's log (debug level)
}

func newBootRig(t testing.TB, data int) *bootRig {
	t.Helper()
	if !ipmisim.Available() {
		t.Skip("ipmi_sim not installed (scripts/install-deps.sh)")
	}
	r := &bootRig{t: t, dir: t.TempDir(), bmcs: map[string]*ipmisim.BMC{}, mnts: map[string]string{}, logs: &lockedBuffer{}}
	useTestBMCKey(t)
	r.ovlys = filepath.Join(r.dir, "overlays")
	r.tc = testcluster.New(t, testcluster.Options{TLSDir: testTLSDir, Meta: 3, Data: data})
	r.meta = strings.Join(r.tc.MetaAddrs(), ",")
	c, err := client.New(client.Config{MetaAddrs: r.tc.MetaAddrs(), TLS: r.tc.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r.c, r.st = c, keyedStore(t, c)
	ctx := context.Background()
	if err := r.st.Init(ctx); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// HTTPS as `strata bootctl` serves it: the agents fetch their iPXE
	// script and check in with their client certificates.
	id := r.tc.Identity(pki.RoleBootctl)
	r.url = "https://" + lis.Addr().String()
	srvLog := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hs := &http.Server{Handler: bootctl.NewServer(r.st, bootctl.ServerConfig{Meta: r.meta, URL: r.url, TLS: true, Logger: srvLog})}
	go hs.Serve(pki.NewListener(lis, id.ServerTLSOptional(), nil, nil, "bootctl-http")) //nolint:errcheck // closed in cleanup
	t.Cleanup(func() { hs.Close() })
	// Registered after the BMCs' own cleanups run (LIFO): detach any mount
	// a killed agent left behind.
	t.Cleanup(func() {
		for name, mp := range r.mnts {
			for _, p := range []string{mp, filepath.Join(r.ovlys, name, "ova", name, "lower"), filepath.Join(r.ovlys, name, "ovb", name, "lower")} {
				if bootctl.IsMounted(p) {
					t.Logf("%s left mounted by a killed node; detaching", p)
					syscall.Unmount(p, syscall.MNT_DETACH)
				}
			}
		}
	})
	return r
}

// addNode starts a BMC whose power-on runs `strata boot-agent` (the test
// binary) and registers the node in group.
func (r *bootRig) addNode(name, mac, group string, agentArgs ...string) {
	r.t.Helper()
	self, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	mp := filepath.Join(r.dir, "mnt", name)
	r.mnts[name] = mp
	b := ipmisim.Start(r.t, ipmisim.Options{
		Node: append([]string{self, "boot-agent", "--ipxe-url", r.url + "/boot/ipxe", "--mac", mac, "--overlay-root", filepath.Join(r.ovlys, name),
			"--mountpoint", mp, "--heartbeat", "1s"},
			agentArgs...),
		Env:      []string{asStrata, "STRATA_TLS_DIR=" + testTLSDir},
		Password: "Sekr1t-" + name,
	})
	r.bmcs[name] = b
	mustCLIRun(r.t, "node", "add", name, "--meta", r.meta, "--mac", mac, "--bmc", b.Addr(), "--bmc-user", b.User, "--bmc-password", b.Password, "--group", group)
}

// mustCLIRun runs a strata command in-process and fails the test on error.
func mustCLIRun(t testing.TB, args ...string) string {
	t.Helper()
	code, out, errOut := cliRun(args...)
	if code != 0 {
		t.Fatalf("strata %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func cliRun(args ...string) (int, string, string) {
	var out, errb strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// checkBooted verifies every node of the rig checked in with image at
// generation gen, is mounted, and that its BMC says power on and boot
// device PXE (cross-checked with ipmitool).
func (r *bootRig) checkBooted(image string, gen uint64) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for name, b := range r.bmcs {
		ci, err := r.st.GetCheckIn(ctx, name)
		if err != nil || ci.Image != image || ci.Generation != gen || ci.Error != "" {
			r.t.Errorf("%s: check-in %+v, %v; want %s generation %d", name, ci, err, image, gen)
		}
		if !bootctl.IsMounted(r.mnts[name]) {
			r.t.Errorf("%s: %s not mounted", name, r.mnts[name])
		}
		if got, err := os.ReadFile(filepath.Join(r.mnts[name], "etc", "release")); err != nil || string(got) != image+"\n" {
			r.t.Errorf("%s: /etc/release in the mount: %q %v; want %s", name, got, err, image)
		}
		if out, err := b.Ipmitool(ctx, "chassis", "power", "status"); err != nil || !strings.Contains(out, "is on") {
			r.t.Errorf("%s: ipmitool power: %q %v", name, out, err)
		}
		if out, err := b.Ipmitool(ctx, "chassis", "bootparam", "get", "5"); err != nil || !strings.Contains(out, "PXE") {
			r.t.Errorf("%s: ipmitool boot device: %q %v", name, out, err)
		}
	}
}

// TestGroupSwitchOnSimulatedNodes: 4 nodes on ipmi_sim BMCs, each power-on
// starting a real boot agent that fetches its iPXE script, mounts and
// checks in. Images A and B are real imported images, mounted with each
// node's overlay (strata mount --image). The group is switched A -> B
// (every node power-cycled, checks in with B and sees B), rolled back to A
// (with the files written into the A-time overlays), and bad switches
// change nothing.
func TestGroupSwitchOnSimulatedNodes(t *testing.T) {
	r := newBootRig(t, 6)
	ctx := context.Background()
	for _, img := range []string{"alpha:1", "beta:2"} {
		src := filepath.Join(r.dir, "src-"+img)
		if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "etc", "release"), []byte(img+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustCLIRun(t, "image", "import", "--meta", r.meta, img, src)
	}
	mustCLIRun(t, "group", "create", "hpc", "--meta", r.meta, "--image", "alpha:1", "--overlay", "ova")
	for i := 0; i < 4; i++ {
		r.addNode(fmt.Sprintf("n%d", i), fmt.Sprintf("02:00:00:00:00:%02x", i+1), "hpc")
	}
	// First boot of all four.
	out := mustCLIRun(t, "node", "power", "on", "--meta", r.meta, "--pxe", "--group", "hpc")
	t.Logf("\n%s", out)
	for name := range r.bmcs {
		if _, err := bootctl.WaitCheckIn(ctx, r.st, name, 60*time.Second, 100*time.Millisecond, func(ci bootctl.CheckIn) bool { return ci.Generation == 1 }); err != nil {
			t.Fatal(err)
		}
	}
	r.checkBooted("alpha:1", 1)
	// Each node writes a file through its mount: it lands in its A overlay.
	for name := range r.bmcs {
		if err := os.WriteFile(filepath.Join(r.mnts[name], "kept"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	boots := r.boots()

	// Bad switches change nothing and reboot nobody.
	if code, _, errOut := cliRun("group", "switch", "hpc", "--meta", r.meta, "--image", "gamma:9"); code == 0 || !strings.Contains(errOut, "image does not exist") {
		t.Errorf("switch to a missing image: exit %d: %s", code, errOut)
	}
	if code, out, _ := cliRun("group", "switch", "hpc", "--meta", r.meta, "--image", "beta:2", "--dry-run"); code != 0 || !strings.Contains(out, "dry run") {
		t.Errorf("dry run: exit %d: %s", code, out)
	}
	if g, _ := r.st.GetGroup(ctx, "hpc"); g.Config.Image != "alpha:1" || g.Config.Generation != 1 {
		t.Errorf("group changed by a refused or dry-run switch: %+v", g.Config)
	}
	if b := r.boots(); b != boots {
		t.Errorf("nodes rebooted by a refused or dry-run switch: %d boots, was %d", b, boots)
	}

	start := time.Now()
	code, out, errOut := cliRun("group", "switch", "hpc", "--meta", r.meta, "--image", "beta:2", "--overlay", "ovb", "--boot-timeout", "60s", "--log-level", "debug")
	if code != 0 {
		t.Fatalf("switch: exit %d\n%s\n%s", code, out, errOut)
	}
	cliOut := []string{out, errOut}
	t.Logf("switch A->B in %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	r.checkBooted("beta:2", 2)
	for name := range r.bmcs {
		if _, err := os.Stat(filepath.Join(r.mnts[name], "kept")); !os.IsNotExist(err) {
			t.Errorf("%s: the A overlay's file shows under B (overlay ovb): %v", name, err)
		}
	}
	if b := r.boots(); b != boots+4 {
		t.Errorf("%d boots after the switch; want %d (each node once)", b, boots+4)
	}
	// A fifth node whose BMC refuses our password: the rollback does every
	// other node and reports this one as failed, with the reason.
	mustCLIRun(t, "node", "add", "broken", "--meta", r.meta, "--mac", "02:00:00:00:00:99", "--bmc", r.bmcs["n0"].Addr(),
		"--bmc-password", "Wr0ng-pw-77", "--group", "hpc")
	code, out, errOut = cliRun("group", "rollback", "hpc", "--meta", r.meta, "--boot-timeout", "60s", "--ipmi-retries", "0", "--log-level", "debug")
	cliOut = append(cliOut, out, errOut)
	t.Logf("rollback:\n%s", out)
	if code != 1 || !strings.Contains(errOut, "1 of 5 nodes did not switch") || !strings.Contains(out, "broken: node broken: cycle: bootctl: BMC refused the credentials") {
		t.Errorf("rollback with a broken BMC: exit %d\n%s\n%s", code, out, errOut)
	}
	mustCLIRun(t, "node", "rm", "broken", "--meta", r.meta)
	r.checkBooted("alpha:1", 3)
	for name := range r.bmcs {
		if got, err := os.ReadFile(filepath.Join(r.mnts[name], "kept")); err != nil || string(got) != name {
			t.Errorf("%s: file of the A-time overlay after rollback: %q %v", name, got, err)
		}
		if ci, _ := r.st.GetCheckIn(ctx, name); ci.Overlay != "ova" {
			t.Errorf("%s: overlay after rollback %q; want ova", name, ci.Overlay)
		}
	}
	out = mustCLIRun(t, "node", "list", "--meta", r.meta)
	if strings.Contains(out, "password") || !strings.Contains(out, "alpha:1 (gen 3)") {
		t.Errorf("node list:\n%s", out)
	}
	// The image mounts report their activity too (the agent reads the
	// counters `strata mount --image --activity-file` keeps).
	for name := range r.bmcs {
		if _, err := bootctl.WaitCheckIn(ctx, r.st, name, 20*time.Second, 100*time.Millisecond, func(ci bootctl.CheckIn) bool {
			return ci.MountRequests > 0 && !ci.MountActiveAt.IsZero()
		}); err != nil {
			t.Errorf("%s: no mount activity reported: %v", name, err)
		}
	}
	cliOut = append(cliOut, out)
	cliOut = append(cliOut, mustCLIRun(t, "node", "show", "n0", "--meta", r.meta), mustCLIRun(t, "node", "list", "--json", "--meta", r.meta))
	r.checkNoPasswords(append(cliOut, r.logs.String()), "Wr0ng-pw-77")
}

// checkNoPasswords: no BMC password of the rig (nor extra ones) appears in
// texts (CLI output and logs), in any node's own log (boot agent and
// mount), or in the clear in the inventory.
func (r *bootRig) checkNoPasswords(texts []string, extra ...string) {
	r.t.Helper()
	ctx := context.Background()
	pws := extra
	for name, b := range r.bmcs {
		pws = append(pws, b.Password)
		nodeLog, err := os.ReadFile(filepath.Join(b.Dir, "node.log"))
		if err != nil {
			r.t.Errorf("%s: %v", name, err)
		}
		texts = append(texts, string(nodeLog))
		attr, err := r.c.Stat(ctx, bootctl.Root+"/nodes/"+name)
		if err != nil {
			r.t.Fatal(err)
		}
		rec, err := r.c.GetXattr(ctx, attr.GetIno(), "user.strata.node")
		if err != nil || !strings.Contains(string(rec), "password_sealed") {
			r.t.Errorf("%s: stored record %s %v; want a sealed password", name, rec, err)
		}
		texts = append(texts, string(rec))
	}
	n := 0
	for _, text := range texts {
		n += len(text)
		for _, pw := range pws {
			if strings.Contains(text, pw) {
				r.t.Errorf("BMC password %q appears in output or logs:\n%s", pw, text)
			}
		}
	}
	if n < 10000 {
		r.t.Errorf("only %d bytes of output and logs checked; expected the whole run's", n)
	}
	r.t.Logf("%d bytes of CLI output, controller, agent and mount logs checked: no BMC password", n)
}

func (r *bootRig) boots() int {
	n := 0
	for _, b := range r.bmcs {
		n += b.Boots()
	}
	return n
}
