package bootctl

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/ipmisim"
)

type noImages struct{}

func (noImages) HasImage(_ context.Context, ref string) (bool, error) {
	return ref == "img:1" || ref == "img:2", nil
}

// readAudit parses the audit log at path into records.
func readAudit(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	return recs
}

// findRecord returns the first record with this action and object.
func findRecord(recs []map[string]any, action, object string) map[string]any {
	for _, r := range recs {
		if r["action"] == action && r["object"] == object {
			return r
		}
	}
	return nil
}

// TestAuditRecords: power actions on real simulated BMCs (one with a wrong
// password), node add/set/rm (one refused), and a group switch, a refused
// switch and a rollback each leave an audit record with the right outcome,
// in a 0600 file, and no record holds a BMC password.
func TestAuditRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "audit.log")
	al, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := Audit{Log: al, Actor: "tester@host"}
	good := ipmisim.Start(t, ipmisim.Options{Password: "bmc-pass-7Q"})
	wrong := bmcOf(good)
	wrong.Password = "wrong-pass-XYZ"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	nodes := []Node{{Name: "good", BMC: bmcOf(good)}, {Name: "badpass", BMC: wrong}}
	o := PowerOptions{Timeout: 5 * time.Second, Retries: 1, RetryDelay: 100 * time.Millisecond, Audit: a}
	PowerAll(ctx, IPMI{RequestTimeout: time.Second}, nodes, ActionOn, o, nil)
	PowerAll(ctx, IPMI{RequestTimeout: time.Second}, nodes[:1], ActionOff, o, nil)

	s, _ := newStore(t)
	s.Audit = a
	if err := s.CreateGroup(ctx, Group{Name: "g", Config: GroupConfig{Image: "img:1"}}); err != nil {
		t.Fatal(err)
	}
	n := Node{Name: "c1", MACs: []string{"02:00:00:00:00:01"}, BMC: BMC{Addr: "127.0.0.1:1", User: "admin", Password: "node-secret-42"}}
	if err := s.AddNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.AddNode(ctx, n); err == nil {
		t.Fatal("duplicate node accepted")
	}
	if _, err := s.UpdateNode(ctx, "c1", func(n *Node) error { n.Group = "g"; return nil }); err != nil {
		t.Fatal(err)
	}
	sw := &Switcher{Store: s, Power: IPMI{RequestTimeout: 300 * time.Millisecond, Retries: 1}, Images: noImages{}, Audit: a}
	// The group's only node is c1, whose BMC is nowhere: the switch is
	// recorded, its node's power cycle fails and is recorded too.
	so := SwitchOptions{BootTimeout: time.Second, Retries: -1, Power: PowerOptions{Timeout: time.Second, Retries: -1, Audit: a}}
	if _, _, err := sw.Switch(ctx, "g", GroupConfig{Image: "img:2"}, so); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sw.Switch(ctx, "g", GroupConfig{Image: "missing:1"}, so); err == nil {
		t.Fatal("switch to a missing image accepted")
	}
	if _, _, err := sw.Rollback(ctx, "g", so); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveNode(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("audit log: %v, mode %v (want 0600)", err, st.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	for _, secret := range []string{"bmc-pass-7Q", "wrong-pass-XYZ", "node-secret-42", `"password"`} {
		if strings.Contains(string(raw), secret) {
			t.Fatalf("the audit log holds the BMC password %q:\n%s", secret, raw)
		}
	}
	recs := readAudit(t, path)
	for _, w := range []struct{ action, object, outcome string }{
		{"power.on", "node/good", audit.Allowed},
		{"power.off", "node/good", audit.Allowed},
		{"power.on", "node/badpass", audit.Denied},
		{"bmc.auth", "bmc/" + good.Addr(), audit.Denied},
		{"node.add", "node/c1", audit.Allowed},
		{"node.set", "node/c1", audit.Allowed},
		{"group.switch", "group/g", audit.Allowed},
		{"power.cycle", "node/c1", audit.Failed},
		{"group.rollback", "group/g", audit.Allowed},
		{"node.rm", "node/c1", audit.Allowed},
	} {
		r := findRecord(recs, w.action, w.object)
		if r == nil {
			t.Errorf("no %s record for %s", w.action, w.object)
			continue
		}
		if r["outcome"] != w.outcome || r["actor"] != "tester@host" {
			t.Errorf("%s %s: outcome %v actor %v, want %s", w.action, w.object, r["outcome"], r["actor"], w.outcome)
		}
	}
	var adds, failedSwitch int
	for _, r := range recs {
		if r["action"] == "node.add" && r["outcome"] == audit.Failed {
			adds++
		}
		if r["action"] == "group.switch" && r["outcome"] == audit.Failed && r["image"] == "missing:1" {
			failedSwitch++
		}
	}
	if adds != 1 || failedSwitch != 1 {
		t.Errorf("refused add recorded %d times, refused switch %d times; want 1 and 1", adds, failedSwitch)
	}
	if r := findRecord(recs, "group.switch", "group/g"); r != nil && (r["image"] != "img:2" || r["nodes"] != float64(1)) {
		t.Errorf("switch record %v", r)
	}
}
