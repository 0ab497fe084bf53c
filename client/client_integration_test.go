package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// These tests run the client against a whole in-process cluster (3 Raft
// metaservers, 6 dataservers, real gRPC and disks) with the default 4+2,
// 4 MiB policy.

func newClusterClient(t testing.TB, data int) (*testcluster.Cluster, *client.Client) {
	t.Helper()
	cl := testcluster.New(t, testcluster.Options{Meta: 3, Data: data})
	c, err := client.New(client.Config{
		MetaAddrs:    cl.MetaAddrs(),
		TLS:          cl.ClientTLS(),
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		ShardTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return cl, c
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, ^seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(i)
	}
	return b
}

func getAll(t testing.TB, c *client.Client, p string) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	_, err := c.Get(ctxFor(t), p, &buf)
	return buf.Bytes(), err
}

func TestClusterPutGet(t *testing.T) {
	_, c := newClusterClient(t, 6)
	ctx := ctxFor(t)
	const mib = 1 << 20
	sizes := []int{0, 1, 4*mib - 1, 4 * mib, 4*mib + 1, 100 * mib}
	if testing.Short() {
		sizes = sizes[:5]
	}
	if err := c.MkdirAll(ctx, "/it/put", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, size := range sizes {
		data := pattern(size, uint64(size))
		p := fmt.Sprintf("/it/put/f%d", size)
		attr, err := c.Put(ctx, p, bytes.NewReader(data), client.PutOptions{})
		if err != nil {
			t.Fatalf("put %d bytes: %v", size, err)
		}
		if attr.Size != uint64(size) {
			t.Fatalf("put %d bytes: size %d", size, attr.Size)
		}
		got, err := getAll(t, c, p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("get %d bytes: %d bytes back, identical=%v, err %v", size, len(got), bytes.Equal(got, data), err)
		}
	}
	list, err := c.ReadDir(ctx, "/it/put")
	if err != nil || len(list) != len(sizes) {
		t.Fatalf("readdir: %d entries, %v", len(list), err)
	}
}

func TestClusterWriteAtReadAt(t *testing.T) {
	_, c := newClusterClient(t, 6)
	ctx := ctxFor(t)
	data := pattern(9<<20+17, 1)
	attr, err := c.Put(ctx, "/f", bytes.NewReader(data), client.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	patch := pattern(3<<20, 2)
	at := 3<<20 + 12345 // spans chunks 0..1, partially
	if _, err := c.WriteAt(ctx, attr.Ino, patch, int64(at)); err != nil {
		t.Fatal(err)
	}
	copy(data[at:], patch)
	if err := c.Truncate(ctx, attr.Ino, 5<<20+3); err != nil {
		t.Fatal(err)
	}
	data = data[:5<<20+3]
	p := make([]byte, len(data)+10)
	n, err := c.ReadAt(ctx, attr.Ino, p, 0)
	if n != len(data) || err != io.EOF || !bytes.Equal(p[:n], data) {
		t.Fatalf("ReadAt = %d, %v; identical=%v", n, err, bytes.Equal(p[:n], data))
	}
}

// TestClusterDegradedRead stops two of six dataservers: every 4+2 stripe
// has lost two shards and must still read back exactly; with a third
// stopped, reads must fail with ErrNotEnoughShards, not wrong bytes.
func TestClusterDegradedRead(t *testing.T) {
	cl, c := newClusterClient(t, 6)
	ctx := ctxFor(t)
	files := map[string][]byte{
		"/small": pattern(1000, 1), // replicated
		"/one":   pattern(4<<20, 2),
		"/many":  pattern(10<<20+333, 3),
	}
	for p, data := range files {
		if _, err := c.Put(ctx, p, bytes.NewReader(data), client.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cl.KillData(1)
	cl.KillData(4)
	for p, data := range files {
		got, err := getAll(t, c, p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s with 2 dataservers down: identical=%v err=%v", p, bytes.Equal(got, data), err)
		}
	}
	attr, err := c.Stat(ctx, "/many")
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 100000)
	if _, err := c.ReadAt(ctx, attr.Ino, p, 5<<20+77); err != nil || !bytes.Equal(p, files["/many"][5<<20+77:][:100000]) {
		t.Fatalf("degraded ReadAt: %v", err)
	}

	cl.KillData(0)
	_, err = getAll(t, c, "/many")
	if !errors.Is(err, client.ErrNotEnoughShards) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("3 dataservers down: err = %v, want ErrNotEnoughShards", err)
	}
	var ce *client.ChunkError
	if !errors.As(err, &ce) || len(ce.Failures) < 3 || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("3 dataservers down: error does not name the failed shards: %v", err)
	}
	t.Logf("error with 3 down: %v", err)
}

// TestClusterWriteWithServerDown writes while a dataserver is dead but
// not yet declared so: its shards go to spares or, with none left, the
// stripe is stored degraded (k+1 of k+m) and still reads back, even with
// one more server lost.
func TestClusterWriteWithServerDown(t *testing.T) {
	cl, c := newClusterClient(t, 6)
	ctx := ctxFor(t)
	cl.KillData(2)
	data := pattern(9<<20, 4)
	if _, err := c.Put(ctx, "/f", bytes.NewReader(data), client.PutOptions{}); err != nil {
		t.Fatalf("put with a dataserver down: %v", err)
	}
	cl.KillData(5)
	got, err := getAll(t, c, "/f")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get: identical=%v err=%v", bytes.Equal(got, data), err)
	}
}

// slowReader hands out data in small pieces with pauses, so that a Put
// lasts long enough for a failover to happen in the middle of it.
type slowReader struct {
	data  []byte
	pause time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(r.pause)
	n := copy(p, r.data[:min(len(r.data), 1<<20)])
	r.data = r.data[n:]
	return n, nil
}

// TestClusterPutThroughLeaderFailover kills the metadata leader in the
// middle of a Put: the client's calls follow the new leader, retried with
// the same request ids, and the file must come out whole.
func TestClusterPutThroughLeaderFailover(t *testing.T) {
	cl, c := newClusterClient(t, 6)
	ctx := ctxFor(t)
	data := pattern(48<<20, 5)
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, "/f", &slowReader{data: data, pause: 20 * time.Millisecond}, client.PutOptions{})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	leader := cl.WaitLeader()
	cl.KillMeta(leader)
	if err := <-done; err != nil {
		t.Fatalf("put across a leader failover: %v", err)
	}
	cl.RestartMeta(leader)
	got, err := getAll(t, c, "/f")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get after failover: identical=%v err=%v", bytes.Equal(got, data), err)
	}
}

// BenchmarkClusterPut and BenchmarkClusterGet move 1 GiB through a real
// in-process cluster on loopback (servers and client share the CPUs), for
// several values of MaxInflightChunks.
const benchFileSize = 1 << 30

var benchInflight = []int{2, 4, 8, 16}

func inflightClient(b *testing.B, cl *testcluster.Cluster, inflight int) *client.Client {
	c, err := client.New(client.Config{
		MetaAddrs:         cl.MetaAddrs(),
		TLS:               cl.ClientTLS(),
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		MaxInflightChunks: inflight,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func BenchmarkClusterPut(b *testing.B) {
	cl, _ := newClusterClient(b, 6)
	data := pattern(benchFileSize, 1)
	for _, inflight := range benchInflight {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			c := inflightClient(b, cl, inflight)
			b.SetBytes(benchFileSize)
			for i := 0; i < b.N; i++ {
				if _, err := c.Put(ctxFor(b), "/bench", bytes.NewReader(data), client.PutOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkClusterGet(b *testing.B) {
	cl, c := newClusterClient(b, 6)
	if _, err := c.Put(ctxFor(b), "/bench", bytes.NewReader(pattern(benchFileSize, 2)), client.PutOptions{}); err != nil {
		b.Fatal(err)
	}
	for _, inflight := range benchInflight {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			c := inflightClient(b, cl, inflight)
			b.SetBytes(benchFileSize)
			for i := 0; i < b.N; i++ {
				if _, err := c.Get(ctxFor(b), "/bench", io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
