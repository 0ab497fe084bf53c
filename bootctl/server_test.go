package bootctl

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIPXEPerMAC: every registered MAC (in any notation) gets exactly its
// group's configuration; unknown MACs get a "not registered" script and
// are listed; malformed and duplicate MAC parameters get a clear 400.
func TestIPXEPerMAC(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, g := range []Group{
		{Name: "ga", Config: GroupConfig{Image: "alpha:1", Overlay: "ovl-a", KernelArgs: "console=ttyS0"}},
		{Name: "gb", Config: GroupConfig{Image: "beta:2"}},
	} {
		if err := s.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	nodes := []Node{
		{Name: "c1", MACs: []string{"02:00:00:00:01:01", "02:00:00:00:01:02"}, BMC: BMC{Addr: "127.0.0.1:1"}, Group: "ga"},
		{Name: "c2", MACs: []string{"02:00:00:00:02:01"}, BMC: BMC{Addr: "127.0.0.1:2"}, Group: "gb"},
		{Name: "c3", MACs: []string{"02:00:00:00:03:01"}, BMC: BMC{Addr: "127.0.0.1:3"}},
	}
	for _, n := range nodes {
		if err := s.AddNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(NewServer(s, ServerConfig{Meta: "10.0.0.100:7400", URL: "http://10.0.0.5:7480", Kernel: "http://k/vmlinuz", Initrd: "http://k/initrd"}))
	defer srv.Close()
	want := map[string]string{
		"02:00:00:00:01:01": "kernel http://k/vmlinuz initrd=initrd strata.meta=10.0.0.100:7400 strata.image=alpha:1 strata.overlay=ovl-a strata.node=c1 strata.group=ga strata.gen=1 strata.bootctl=http://10.0.0.5:7480 console=ttyS0\n",
		"0200.0000.0102":    "strata.image=alpha:1 strata.overlay=ovl-a strata.node=c1 ",
		"02-00-00-00-02-01": "kernel http://k/vmlinuz initrd=initrd strata.meta=10.0.0.100:7400 strata.image=beta:2 strata.overlay=c2 strata.node=c2 strata.group=gb strata.gen=1 strata.bootctl=http://10.0.0.5:7480\n",
	}
	for mac, line := range want {
		code, body := get(t, srv.URL+"/boot/ipxe?mac="+url.QueryEscape(mac))
		if code != 200 || !strings.HasPrefix(body, "#!ipxe\n") || !strings.Contains(body, line) || !strings.Contains(body, "\nboot\n") {
			t.Errorf("mac %s: %d\n%s\nwant a line containing %q", mac, code, body, line)
		}
	}
	if code, body := get(t, srv.URL+"/boot/ipxe?mac=02:00:00:00:03:01"); code != 200 || !strings.Contains(body, "node c3 is in no group") {
		t.Errorf("node without group: %d %s", code, body)
	}
	code, body := get(t, srv.URL+"/boot/ipxe?mac=02:00:00:00:09:09")
	if code != 200 || !strings.Contains(body, "02:00:00:00:09:09) is not registered") || strings.Contains(body, "kernel ") {
		t.Errorf("unknown MAC: %d %s", code, body)
	}
	code, body = get(t, srv.URL+"/boot/unknown")
	var unknown []UnknownMAC
	if err := json.Unmarshal([]byte(body), &unknown); err != nil || code != 200 || len(unknown) != 1 || unknown[0].MAC != "02:00:00:00:09:09" {
		t.Errorf("unknown list: %d %s", code, body)
	}
	for _, q := range []string{"mac=02:00:00", "mac=zz:00:00:00:00:01", "", "mac=02:00:00:00:01:01&mac=02:00:00:00:02:01"} {
		code, body := get(t, srv.URL+"/boot/ipxe?"+q)
		if code != 400 || body == "" {
			t.Errorf("?%s: %d %q; want 400 with a reason", q, code, body)
		}
	}
	// Adopting the unknown MAC takes it off the list.
	if err := s.AddNode(ctx, Node{Name: "c9", MACs: []string{"02:00:00:00:09:09"}, BMC: BMC{Addr: "127.0.0.1:9"}, Group: "gb"}); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, srv.URL+"/boot/unknown"); strings.Contains(body, "09:09") {
		t.Errorf("adopted MAC still listed: %s", body)
	}
	// Check-ins: accepted for a node's own MAC, refused for another's.
	post := func(ci CheckIn) int {
		b, _ := json.Marshal(ci)
		resp, err := http.Post(srv.URL+"/boot/checkin", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(CheckIn{Node: "c1", MAC: "02:00:00:00:01:02", Image: "alpha:1", Generation: 1}); c != 204 {
		t.Errorf("check-in: %d", c)
	}
	if c := post(CheckIn{Node: "c1", MAC: "02:00:00:00:02:01"}); c != 400 {
		t.Errorf("check-in with another node's MAC: %d", c)
	}
	if c := post(CheckIn{Node: "nobody"}); c != 404 {
		t.Errorf("check-in of an unknown node: %d", c)
	}
	ci, err := s.GetCheckIn(ctx, "c1")
	if err != nil || ci.Image != "alpha:1" || ci.At.IsZero() {
		t.Errorf("stored check-in: %+v %v", ci, err)
	}
}

func TestParseCmdline(t *testing.T) {
	p, err := ParseCmdline("BOOT_IMAGE=x ro strata.meta=10.0.0.1:7400 strata.image=a:1 strata.overlay=o strata.node=n1 strata.group=g strata.gen=7 strata.bootctl=http://h:1 quiet\n")
	if err != nil || p.Meta != "10.0.0.1:7400" || p.Image != "a:1" || p.Overlay != "o" || p.Node != "n1" || p.Generation != 7 || p.Bootctl != "http://h:1" {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := ParseCmdline("ro quiet"); err == nil || !strings.Contains(err.Error(), "strata.meta") {
		t.Errorf("plain cmdline: %v", err)
	}
	if _, err := ParseCmdline("strata.meta=a strata.image=a:1 strata.node=n strata.gen=x"); err == nil {
		t.Error("bad strata.gen accepted")
	}
}
