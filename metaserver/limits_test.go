package metaserver_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/ratelimit"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/metaserver"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// dialFrom connects to addr from the loopback address src with the TLS
// credentials creds. A client's identity for rate limits is its
// certificate's subject (its address without TLS): two certificates make
// two clients on one machine.
func dialFrom(t *testing.T, src, addr string, creds grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	cc, err := grpc.NewClient(addr, creds,
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestOversizedRequestRefused: a metadata request over the metaserver's
// 4 MiB limit gets a clear ResourceExhausted at once (not retried by the
// client library as if it were transient), and the server keeps serving.
func TestOversizedRequestRefused(t *testing.T) {
	tc := testcluster.New(t, testcluster.Options{Meta: 1})
	addr := tc.MetaAddrs()[0]
	mc := stratapb.NewMetaClient(dialFrom(t, "127.0.0.1", addr, tc.DialCreds(pki.RoleMeta)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	big := strings.Repeat("n", metaserver.DefaultMaxRecvMsgSize+1)
	_, err := mc.Mkdir(ctx, &stratapb.MkdirRequest{Parent: 1, Name: big, Mode: 0o755})
	if status.Code(err) != codes.ResourceExhausted || !rpcerr.TooLarge(err) {
		t.Fatalf("oversized mkdir: %v, want ResourceExhausted (message larger than max)", err)
	}
	if rpcerr.Retryable(err) {
		t.Fatal("an oversized request counts as retryable")
	}
	// Through the client library's retry loop: refused at once.
	conn, err := metaconn.New([]string{addr}, metaconn.Options{DialOptions: []grpc.DialOption{tc.DialCreds(pki.RoleMeta), grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64 << 20))}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	err = conn.Call(ctx, func(ctx context.Context, c stratapb.MetaClient) error {
		_, err := c.Mkdir(ctx, &stratapb.MkdirRequest{Parent: 1, Name: big, Mode: 0o755})
		return err
	})
	if !rpcerr.TooLarge(err) || time.Since(start) > 10*time.Second {
		t.Fatalf("client library: %v after %v", err, time.Since(start))
	}
	// The server still serves.
	if _, err := mc.Mkdir(ctx, &stratapb.MkdirRequest{Parent: 1, Name: "after", Mode: 0o755}); err != nil {
		t.Fatalf("mkdir after the oversized request: %v", err)
	}
}

// TestRateLimitGreedyClient: with a low per-client rate, a greedy client
// (one loopback address) is refused with ResourceExhausted while another
// (another address) gets every call through; the client library, over
// its rate, backs off and completes every call.
func TestRateLimitGreedyClient(t *testing.T) {
	tc := testcluster.New(t, testcluster.Options{Meta: 1})
	tc.KillMeta(0)
	tc.Meta[0].Cfg.Limits = metaserver.Limits{Rate: ratelimit.Config{Rate: 50, Burst: 50}}
	tc.RestartMeta(0)
	addr := tc.MetaAddrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	greedy := stratapb.NewMetaClient(dialFrom(t, "127.0.0.2", addr, tc.DialCredsAs(pki.RoleClient, pki.RoleMeta)))
	other := stratapb.NewMetaClient(dialFrom(t, "127.0.0.3", addr, tc.DialCredsAs(pki.RoleBootctl, pki.RoleMeta)))
	waitServing(ctx, t, other)

	var limited, ok atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := greedy.GetAttr(ctx, &stratapb.GetAttrRequest{Ino: 1})
			switch {
			case err == nil:
				ok.Add(1)
			case rpcerr.IsRateLimited(err):
				limited.Add(1)
			default:
				t.Errorf("greedy client: %v", err)
				return
			}
		}
	}()
	for i := 0; i < 20; i++ {
		if _, err := other.GetAttr(ctx, &stratapb.GetAttrRequest{Ino: 1}); err != nil {
			t.Errorf("the other client was refused (call %d): %v", i, err)
		}
		time.Sleep(50 * time.Millisecond) // 20/s, under its own 50/s
	}
	close(stop)
	<-done
	if limited.Load() == 0 {
		t.Fatalf("greedy client: %d calls through, none limited", ok.Load())
	}
	t.Logf("greedy client: %d through, %d refused", ok.Load(), limited.Load())

	// The client library, from the greedy address, retries with back-off.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conn, err := metaconn.New([]string{addr}, metaconn.Options{DialOptions: []grpc.DialOption{
		tc.DialCredsAs(pki.RoleClient, pki.RoleMeta), grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) })}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 150; i++ {
		err := conn.Call(ctx, func(ctx context.Context, c stratapb.MetaClient) error {
			_, err := c.GetAttr(ctx, &stratapb.GetAttrRequest{Ino: 1})
			return err
		})
		if err != nil {
			t.Fatalf("client library call %d over the rate: %v", i, err)
		}
	}
}

// waitServing waits until the restarted metaserver answers.
func waitServing(ctx context.Context, t *testing.T, mc stratapb.MetaClient) {
	t.Helper()
	for {
		_, err := mc.GetAttr(ctx, &stratapb.GetAttrRequest{Ino: 1})
		if err == nil {
			return
		}
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("metaserver not serving: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
