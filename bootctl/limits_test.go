package bootctl

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/ratelimit"
)

// httpFrom is an HTTP client whose connections come from loopback
// address src: one peer identity per client on one machine.
func httpFrom(src string) *http.Client {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestHTTPLimits: an oversized check-in body gets 413 (declared length)
// or 400 (chunked, cut at the cap), a greedy client gets 429 while
// another still gets its boot script, and the server keeps serving.
func TestHTTPLimits(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.CreateGroup(ctx, Group{Name: "g", Config: GroupConfig{Image: "img:1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddNode(ctx, Node{Name: "n1", MACs: []string{"02:00:00:00:00:01"}, BMC: BMC{Addr: "127.0.0.1:1"}, Group: "g"}); err != nil {
		t.Fatal(err)
	}
	l := DefaultHTTPLimits()
	l.Rate = ratelimit.Config{Rate: 1, Burst: 5}
	srv := httptest.NewServer(Limit(NewServer(s, ServerConfig{Meta: "10.0.0.1:7400"}), l, nil))
	defer srv.Close()
	greedy, other := httpFrom("127.0.0.2"), httpFrom("127.0.0.3")

	big := `{"node":"n1","error":"` + strings.Repeat("x", 100<<10) + `"}`
	resp, err := other.Post(srv.URL+"/boot/checkin", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("100 KiB check-in: %d, want 413", resp.StatusCode)
	}
	// Chunked (no declared length): cut at the cap while decoding.
	req, _ := http.NewRequest("POST", srv.URL+"/boot/checkin", struct{ *strings.Reader }{strings.NewReader(big)})
	req.ContentLength = -1
	if resp, err = other.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked 100 KiB check-in: %d, want 400 or 413", resp.StatusCode)
	}

	var tooMany int
	for i := 0; i < 40; i++ {
		resp, err := greedy.Get(srv.URL + "/status") // cheap: the loop outruns the refill even under -race
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			tooMany++
		}
	}
	if tooMany == 0 {
		t.Fatal("40 requests at once from one client, none refused with 429")
	}
	resp, err = other.Get(srv.URL + "/boot/ipxe?mac=02:00:00:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the other client got %d while the greedy one was limited", resp.StatusCode)
	}
	t.Logf("greedy client: %d of 40 refused with 429", tooMany)
}
