package bootctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// newStore starts a one-voter metadata service (the inventory needs no
// dataserver: it is all metadata) and returns an initialised store.
func newStore(t *testing.T) (*Store, *testcluster.Cluster) {
	t.Helper()
	tc := testcluster.New(t, testcluster.Options{Meta: 1})
	c, err := client.New(client.Config{MetaAddrs: tc.MetaAddrs(), TLS: tc.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := NewStore(c, nil)
	s.SetKey(testKey(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return s, tc
}

func TestNormalizeMAC(t *testing.T) {
	for _, in := range []string{"52:54:00:AB:cd:01", "52-54-00-ab-cd-01", "5254.00ab.cd01", "525400abcd01", " 52:54:00:ab:cd:01 "} {
		got, err := NormalizeMAC(in)
		if err != nil || got != "52:54:00:ab:cd:01" {
			t.Errorf("NormalizeMAC(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "52:54:00:ab:cd", "zz:54:00:ab:cd:01", "52:54:00:ab:cd:01:02:03", "525400abcd0", "hello"} {
		if _, err := NormalizeMAC(in); !errors.Is(err, ErrBadMAC) {
			t.Errorf("NormalizeMAC(%q): want ErrBadMAC, got %v", in, err)
		}
	}
}

func TestInventory(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateGroup(ctx, Group{Name: "a", Config: GroupConfig{Image: "rocky:9", KernelArgs: "quiet"}}))
	must(s.CreateGroup(ctx, Group{Name: "b", Config: GroupConfig{Image: "rocky:10"}}))
	if err := s.CreateGroup(ctx, Group{Name: "a", Config: GroupConfig{Image: "x:1"}}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate group: %v", err)
	}
	if err := s.CreateGroup(ctx, Group{Name: "c", Config: GroupConfig{Image: "no-tag"}}); err == nil {
		t.Error("image without tag accepted")
	}
	n1 := Node{Name: "n1", MACs: []string{"52-54-00-00-00-01"}, BMC: BMC{Addr: "127.0.0.1:9001", User: "admin", Password: "s3cret"}, Group: "a"}
	must(s.AddNode(ctx, n1))
	cases := []struct {
		name string
		n    Node
		want string
	}{
		{"duplicate name", Node{Name: "n1", MACs: []string{"52:54:00:00:00:99"}, BMC: BMC{Addr: "127.0.0.1"}}, "name taken"},
		{"duplicate MAC in another notation", Node{Name: "n2", MACs: []string{"5254.0000.0001"}, BMC: BMC{Addr: "127.0.0.1"}}, "already belongs to n1"},
		{"malformed MAC", Node{Name: "n2", MACs: []string{"52:54:00"}, BMC: BMC{Addr: "127.0.0.1"}}, "malformed MAC"},
		{"two groups", Node{Name: "n2", MACs: []string{"52:54:00:00:00:02"}, BMC: BMC{Addr: "127.0.0.1"}, Group: "a,b"}, "one group"},
		{"missing group", Node{Name: "n2", MACs: []string{"52:54:00:00:00:02"}, BMC: BMC{Addr: "127.0.0.1"}, Group: "zz"}, "not found"},
		{"bad role", Node{Name: "n2", MACs: []string{"52:54:00:00:00:02"}, BMC: BMC{Addr: "127.0.0.1"}, Role: "boss"}, "role"},
		{"bad name", Node{Name: "../n2", MACs: []string{"52:54:00:00:00:02"}, BMC: BMC{Addr: "127.0.0.1"}}, "name"},
	}
	for _, c := range cases {
		if err := s.AddNode(ctx, c.n); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
	// A refused add leaves nothing behind: the MAC of the bad-group node is free.
	must(s.AddNode(ctx, Node{Name: "n2", MACs: []string{"52:54:00:00:00:02"}, BMC: BMC{Addr: "127.0.0.1"}, Group: "b"}))
	got, err := s.NodeByMAC(ctx, "52:54:00:00:00:01")
	if err != nil || got.Name != "n1" || got.BMC.Password != "s3cret" || got.BMC.Addr != "127.0.0.1:9001" {
		t.Fatalf("NodeByMAC: %+v, %v", got, err)
	}
	if strings.Contains(got.BMC.String(), "s3cret") || strings.Contains(fmt.Sprint(got.BMC), "s3cret") {
		t.Error("BMC.String shows the password")
	}
	// Moving a MAC: n1 swaps its MAC; the old one is free, the new one taken.
	_, err = s.UpdateNode(ctx, "n1", func(n *Node) error { n.MACs = []string{"52:54:00:00:00:11"}; return nil })
	must(err)
	if _, err := s.NodeByMAC(ctx, "52:54:00:00:00:01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old MAC still resolves: %v", err)
	}
	if _, err := s.UpdateNode(ctx, "n1", func(n *Node) error { n.MACs = []string{"52:54:00:00:00:02"}; return nil }); !errors.Is(err, ErrExists) {
		t.Errorf("taking n2's MAC: %v", err)
	}
	must(s.RemoveNode(ctx, "n2"))
	if _, err := s.NodeByMAC(ctx, "52:54:00:00:00:02"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed node's MAC still resolves: %v", err)
	}
	nodes, err := s.ListNodes(ctx)
	must(err)
	if len(nodes) != 1 || nodes[0].Name != "n1" {
		t.Errorf("ListNodes: %+v", nodes)
	}
	// Switch and rollback keep exactly one previous configuration.
	g, err := s.SetConfig(ctx, "a", GroupConfig{Image: "rocky:10"})
	must(err)
	if g.Config.Image != "rocky:10" || g.Previous.Image != "rocky:9" || g.Config.Generation != 2 {
		t.Errorf("after SetConfig: %+v", g)
	}
	g, err = s.Rollback(ctx, "a")
	must(err)
	if g.Config.Image != "rocky:9" || g.Config.KernelArgs != "quiet" || g.Previous.Image != "rocky:10" || g.Config.Generation != 3 {
		t.Errorf("after Rollback: %+v / %+v", g.Config, g.Previous)
	}
}

// TestConcurrentAddsOfOneMAC: of many controllers adding nodes with one MAC
// at once, exactly one wins, and the losers leave no node behind.
func TestConcurrentAddsOfOneMAC(t *testing.T) {
	s1, tc := newStore(t)
	c2, err := client.New(client.Config{MetaAddrs: tc.MetaAddrs(), TLS: tc.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	stores := []*Store{s1, NewStore(c2, nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = stores[i%2].AddNode(ctx, Node{Name: fmt.Sprintf("r%d", i), MACs: []string{"02:00:00:00:00:01"}, BMC: BMC{Addr: "127.0.0.1"}})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else if !errors.Is(err, ErrExists) {
			t.Errorf("unexpected error: %v", err)
		}
	}
	nodes, err := s1.ListNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wins != 1 || len(nodes) != 1 {
		t.Fatalf("%d adds won, %d nodes stored; want exactly 1", wins, len(nodes))
	}
}
