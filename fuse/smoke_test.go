package fuse

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSmoke(t *testing.T) {
	c := newCluster(t, nil)
	mp := mount(t, c, nil)
	p := filepath.Join(mp, "hello")
	data := bytes.Repeat([]byte("strata!"), 1<<20)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want %d", len(got), len(data))
	}
	if err := os.Mkdir(filepath.Join(mp, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(mp)
	if err != nil || len(ents) != 2 {
		t.Fatalf("readdir: %v %v", ents, err)
	}
	t.Log(strataMounts())
}
