package bootctl

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB) *Key {
	t.Helper()
	raw := make([]byte, keyBytes)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	k, err := NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawNode is the node record as stored in the metadata service.
func rawNode(t *testing.T, s *Store, name string) string {
	t.Helper()
	ctx := context.Background()
	ino, err := s.ino(ctx, nodesDir+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.c.GetXattr(ctx, ino, xNode)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBMCPasswordEncrypted: a BMC password is stored sealed (never in the
// clear, bound to its node), opens only with its key, gives clear errors
// without a key or with another one, is re-encrypted by Rekey (legacy
// plain ones too), and never shows in String, slog or JSON output.
func TestBMCPasswordEncrypted(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k1, k2 := s.key, testKey(t)
	const pw = "Hunter2-bmc-pw"
	n := Node{Name: "e1", MACs: []string{"02:00:00:00:0e:01"}, BMC: BMC{Addr: "127.0.0.1:9", User: "admin", Password: pw}}
	if err := s.AddNode(ctx, n); err != nil {
		t.Fatal(err)
	}
	raw := rawNode(t, s, "e1")
	if strings.Contains(raw, pw) || !strings.Contains(raw, `"password_sealed":"aes256gcm:v1:`+k1.ID()) {
		t.Fatalf("stored record: %s", raw)
	}
	if got, err := s.GetNode(ctx, "e1"); err != nil || got.BMC.Password != pw {
		t.Fatalf("read with the key: %q %v", got.BMC.Password, err)
	}

	// Without a key: listing works, power actions and new passwords do not.
	noKey := NewStore(s.c, nil)
	got, err := noKey.GetNode(ctx, "e1")
	if err != nil || got.BMC.Password != "" {
		t.Fatalf("read without a key: %+v %v", got.BMC, err)
	}
	if _, err := (IPMI{}).Do(ctx, got.BMC, ActionStatus, false); !errors.Is(err, ErrNoBMCKey) {
		t.Errorf("power without a key: %v", err)
	}
	if err := noKey.CheckKey(ctx); !errors.Is(err, ErrNoBMCKey) {
		t.Errorf("CheckKey without a key: %v", err)
	}
	if _, err := noKey.UpdateNode(ctx, "e1", func(n *Node) error { n.BMC.Password = "new"; return nil }); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("new password without a key: %v", err)
	}
	// An edit without a key that leaves the password alone keeps it.
	if _, err := noKey.UpdateNode(ctx, "e1", func(n *Node) error { n.BMC.User = "root"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetNode(ctx, "e1"); got.BMC.Password != pw || got.BMC.User != "root" {
		t.Errorf("after an edit without the key: %q user %s", got.BMC.Password, got.BMC.User)
	}
	// A new password with the key is sealed afresh (node set --bmc-password).
	for _, p := range []string{"Second-pw-42", pw} {
		if _, err := s.UpdateNode(ctx, "e1", func(n *Node) error { n.BMC.Password = p; return nil }); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetNode(ctx, "e1"); got.BMC.Password != p || strings.Contains(rawNode(t, s, "e1"), p) {
			t.Errorf("after setting %q: read %q, stored %s", p, got.BMC.Password, rawNode(t, s, "e1"))
		}
	}
	raw = rawNode(t, s, "e1")

	// The wrong key: named in the error, at the power action.
	wrong := NewStore(s.c, nil)
	wrong.SetKey(k2)
	got, err = wrong.GetNode(ctx, "e1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = (IPMI{}).Do(ctx, got.BMC, ActionStatus, false)
	if !errors.Is(err, ErrWrongBMCKey) || !strings.Contains(err.Error(), k1.ID()) || !strings.Contains(err.Error(), k2.ID()) {
		t.Errorf("power with the wrong key: %v", err)
	}
	if res := PowerAll(ctx, IPMI{}, []Node{got}, ActionStatus, PowerOptions{}, nil); res[0].Attempts != 1 || !errors.Is(res[0].Err, ErrWrongBMCKey) {
		t.Errorf("PowerAll with the wrong key: %d attempts, %v (want 1, no retry)", res[0].Attempts, res[0].Err)
	}

	// A sealed password copied into another node's record does not open.
	if err := s.AddNode(ctx, Node{Name: "e2", MACs: []string{"02:00:00:00:0e:02"}, BMC: BMC{Addr: "127.0.0.1:9"}}); err != nil {
		t.Fatal(err)
	}
	var e1 Node
	if err := json.Unmarshal([]byte(raw), &e1); err != nil {
		t.Fatal(err)
	}
	copied := Node{Name: "e2", MACs: []string{"02:00:00:00:0e:02"}, BMC: BMC{Addr: "127.0.0.1:9", Sealed: e1.BMC.Sealed}}
	if err := s.setJSON(ctx, nodesDir+"/e2", xNode, copied); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetNode(ctx, "e2"); got.BMC.ready() == nil || got.BMC.Password != "" {
		t.Errorf("a password copied from e1 opened for e2: %q", got.BMC.Password)
	}
	if err := s.CheckKey(ctx); err == nil {
		t.Error("CheckKey passed a password copied between nodes")
	}
	if err := s.RemoveNode(ctx, "e2"); err != nil {
		t.Fatal(err)
	}

	// A legacy record with a plain password: read as is, sealed by Rekey,
	// then everything is under k2 and k1 no longer opens it.
	legacy := Node{Name: "e3", MACs: []string{"02:00:00:00:0e:03"}, BMC: BMC{Addr: "127.0.0.1:9"}}
	if err := s.AddNode(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	legacy.BMC.Plain = "old-plain-pw"
	if err := s.setJSON(ctx, nodesDir+"/e3", xNode, legacy); err != nil {
		t.Fatal(err)
	}
	if got, _ := noKey.GetNode(ctx, "e3"); got.BMC.Password != "old-plain-pw" {
		t.Errorf("legacy plain password: %q", got.BMC.Password)
	}
	if done, err := s.Rekey(ctx, k2); err != nil || done != 2 {
		t.Fatalf("rekey: %d %v", done, err)
	}
	if done, err := s.Rekey(ctx, k2); err != nil || done != 0 {
		t.Errorf("second rekey: %d %v (want 0: already done)", done, err)
	}
	for name, want := range map[string]string{"e1": pw, "e3": "old-plain-pw"} {
		if r := rawNode(t, s, name); strings.Contains(r, want) || !strings.Contains(r, k2.ID()) {
			t.Errorf("%s after rekey: %s", name, r)
		}
		if got, _ := wrong.GetNode(ctx, name); got.BMC.Password != want {
			t.Errorf("%s with the new key: %q", name, got.BMC.Password)
		}
		if got, _ := s.GetNode(ctx, name); got.BMC.ready() == nil {
			t.Errorf("%s still opens with the old key", name)
		}
	}

	// Output: String, slog (text and JSON) and JSON never show it.
	got, _ = wrong.GetNode(ctx, "e1")
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "node", got, "bmc", got.BMC)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "node", got, "bmc", got.BMC)
	js, _ := json.Marshal(got)
	for what, out := range map[string]string{"String": got.BMC.String(), "Sprint": fmt.Sprint(got.BMC), "slog": logs.String(), "json": string(js)} {
		if strings.Contains(out, pw) {
			t.Errorf("%s shows the password: %s", what, out)
		}
	}
}

func TestBMCKeyFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bmc.key")
	k, err := WriteKeyFile(p, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteKeyFile(p, false); err == nil {
		t.Error("an existing key file was replaced without force")
	}
	got, err := LoadKeyFile(p)
	if err != nil || got.ID() != k.ID() {
		t.Fatalf("load: %v %v", got, err)
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing key file: %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key file: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(bad); err == nil || !strings.Contains(err.Error(), "hex-encoded") {
		t.Errorf("malformed key file: %v", err)
	}
}
