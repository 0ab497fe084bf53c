package bootctl

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// FuzzNormalizeMAC: whatever NormalizeMAC accepts comes out as six
// lower-case hex bytes with colons, is a fixed point, and is safe in a file
// name and an iPXE script; everything else is ErrBadMAC.
func FuzzNormalizeMAC(f *testing.F) {
	for _, s := range []string{"52:54:00:AB:cd:01", "5254.00ab.cd01", "525400abcd01", "52-54-00-ab-cd-01", " x ", "", "00:00:5e:00:53:01:02:03", "ff:ff:ff:ff:ff:ff\n", "0000.0000.0000.0000"} {
		f.Add(s)
	}
	canon := regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
	f.Fuzz(func(t *testing.T, s string) {
		m, err := NormalizeMAC(s)
		if err != nil {
			if !errors.Is(err, ErrBadMAC) {
				t.Fatalf("error is not ErrBadMAC: %v", err)
			}
			return
		}
		if !canon.MatchString(m) {
			t.Fatalf("NormalizeMAC(%q) = %q", s, m)
		}
		if again, err := NormalizeMAC(m); err != nil || again != m {
			t.Fatalf("not a fixed point: %q -> %q, %v", m, again, err)
		}
	})
}

// ipxeLine is what every line of a script Strata serves may look like:
// the iPXE commands it writes, with no line injected from input.
var ipxeLine = regexp.MustCompile(`^(#!ipxe|# .*|echo .*|kernel .*|initrd .*|boot|sleep \d+|chain .*|exit.*|shell|prompt .*|reboot|)$`)

// FuzzBootHTTP sends arbitrary requests (method, path, query, body) to
// the boot controller's HTTP server over a real inventory (a one-voter
// metadata service): the iPXE endpoint with any MAC, check-ins with any
// body. No request may crash it or get a 500; a script served is made of
// iPXE lines only; a check-in accepted names the registered node.
func FuzzBootHTTP(f *testing.F) {
	s := fuzzStore(f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateGroup(ctx, Group{Name: "g", Config: GroupConfig{Image: "img:1", KernelArgs: "console=ttyS0"}}); err != nil {
		f.Fatal(err)
	}
	if err := s.AddNode(ctx, Node{Name: "n1", MACs: []string{"02:00:00:00:00:01"}, BMC: BMC{Addr: "127.0.0.1:1", Password: "secret"}, Group: "g"}); err != nil {
		f.Fatal(err)
	}
	srv := NewServer(s, ServerConfig{Meta: "10.0.0.1:7400", URL: "http://10.0.0.2:7480"})
	h := Limit(srv, HTTPLimits{MaxBody: DefaultHTTPLimits().MaxBody}, nil) // no rate limit: every input reaches the handlers
	for _, seed := range []struct{ method, path, query, body string }{
		{"GET", "/boot/ipxe", "mac=02:00:00:00:00:01", ""},
		{"GET", "/boot/ipxe", "mac=0200.0000.0001&mac=x", ""},
		{"GET", "/boot/ipxe", "mac=02%0a00:00:00:00:01", ""},
		{"GET", "/boot/ipxe", "mac=aa:bb:cc:dd:ee:ff", ""},
		{"POST", "/boot/checkin", "", `{"node":"n1","mac":"02-00-00-00-00-01","image":"img:1","generation":1}`},
		{"POST", "/boot/checkin", "", `{"node":"../n1"}`},
		{"POST", "/boot/checkin", "", `{"node":"n1","unknown":1}`},
		{"POST", "/boot/checkin", "", `{"node":"` + strings.Repeat("n", 300) + `"}`},
		{"POST", "/boot/checkin", "", strings.Repeat("[", 100000)},
		{"GET", "/boot/unknown", "", ""},
		{"PUT", "/status", "", "x"},
	} {
		f.Add(seed.method, seed.path, seed.query, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, method, path, query string, body []byte) {
		// Parse the request as net/http's server would: what it refuses
		// never reaches the handler.
		raw := fmt.Sprintf("%s %s?%s HTTP/1.1\r\nHost: boot\r\nContent-Length: %d\r\n\r\n", method, path, query, len(body))
		req, err := http.ReadRequest(bufio.NewReader(io.MultiReader(strings.NewReader(raw), bytes.NewReader(body))))
		if err != nil || !validMethod(method) {
			return
		}
		req.RemoteAddr = "127.0.0.1:4242"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s?%s: %d %s", method, path, query, rec.Code, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "secret") {
			t.Fatalf("the BMC password leaked: %s", rec.Body)
		}
		if method == "GET" && path == "/boot/ipxe" && rec.Code == http.StatusOK {
			for _, line := range strings.Split(rec.Body.String(), "\n") {
				if !ipxeLine.MatchString(line) {
					t.Fatalf("script line %q (query %q)", line, query)
				}
			}
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS":
		return true
	}
	return false
}

// fuzzStore is newStore for a fuzz target (a testing.TB).
func fuzzStore(tb testing.TB) *Store {
	tc := testcluster.New(tb, testcluster.Options{Meta: 1})
	c, err := client.New(client.Config{MetaAddrs: tc.MetaAddrs(), TLS: tc.ClientTLS(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	s := NewStore(c, nil)
	s.SetKey(testKey(tb)) // BMC passwords are stored sealed
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Init(ctx); err != nil {
		tb.Fatal(err)
	}
	return s
}
