package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestRecordWritesJSONLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "audit.log")
	a, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Record(context.Background(), "tenant.create", "admin", "tenant/acme", Allowed, "quota_bytes", 10)
	a.Record(context.Background(), "auth", "CN=x", "meta", Denied, "reason", "unknown CA")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v, want 0600", st.Mode().Perm())
	}
	f, _ := os.Open(path)
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		recs = append(recs, m)
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	if recs[0]["action"] != "tenant.create" || recs[0]["outcome"] != Allowed || recs[0]["quota_bytes"] != float64(10) {
		t.Errorf("first record %v", recs[0])
	}
	if recs[1]["outcome"] != Denied || recs[1]["reason"] != "unknown CA" {
		t.Errorf("second record %v", recs[1])
	}
}

func TestNilLogDiscards(t *testing.T) {
	var a *Log
	a.Record(context.Background(), "x", "y", "z", Allowed) // must not panic
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}
