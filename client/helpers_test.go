package client

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// testPolicy keeps chunks small so that tests cover many chunks quickly:
// 4+2 erasure coding, 64 KiB chunks, chunks under 4 KiB replicated 3x.
func testPolicy() *stratapb.StripePolicy {
	return &stratapb.StripePolicy{DataShards: 4, ParityShards: 2, ChunkSize: 64 << 10, SmallThreshold: 4 << 10}
}

// env is a client wired to a fake metadata service and fake dataservers.
type env struct {
	t    testing.TB
	c    *Client
	meta *fakeMeta
	data []*fakeData
}

func newEnv(t testing.TB, nData int, pol *stratapb.StripePolicy) *env {
	t.Helper()
	e := &env{t: t}
	for i := range nData {
		e.data = append(e.data, startFakeData(t, uint32(i+1)))
	}
	e.meta = startFakeMeta(t, pol, e.data)
	c, err := New(Config{MetaAddrs: []string{e.meta.addr}, Logger: testLogger(t), ShardTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.c = c
	return e
}

// testLogger shows client logs only with -v, where they help debugging.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// server returns the fake dataserver with id.
func (e *env) server(id uint32) *fakeData {
	for _, d := range e.data {
		if d.id == id {
			return d
		}
	}
	e.t.Fatalf("no dataserver %d", id)
	return nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// put writes data to p and fails the test on error.
func (e *env) put(p string, data []byte) *stratapb.Attr {
	e.t.Helper()
	attr, err := e.c.Put(ctxT(e.t), p, bytes.NewReader(data), PutOptions{})
	if err != nil {
		e.t.Fatalf("put %s: %v", p, err)
	}
	return attr
}

func (e *env) get(p string) []byte {
	e.t.Helper()
	var buf bytes.Buffer
	if _, err := e.c.Get(ctxT(e.t), p, &buf); err != nil {
		e.t.Fatalf("get %s: %v", p, err)
	}
	return buf.Bytes()
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
