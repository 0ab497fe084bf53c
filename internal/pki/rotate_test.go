package pki_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/internal/testcluster"
)

// ioLoop writes and reads back files until stop, counting failures.
type ioLoop struct {
	c      *client.Client
	ops    atomic.Int64
	errs   atomic.Int64
	mu     sync.Mutex
	first  error
	stop   chan struct{}
	done   chan struct{}
	nbytes int
}

func startIO(t *testing.T, c *client.Client) *ioLoop {
	l := &ioLoop{c: c, stop: make(chan struct{}), done: make(chan struct{}), nbytes: 300 << 10}
	go l.run()
	t.Cleanup(l.halt)
	return l
}

func (l *ioLoop) fail(err error) {
	l.errs.Add(1)
	l.mu.Lock()
	if l.first == nil {
		l.first = err
	}
	l.mu.Unlock()
}

func (l *ioLoop) run() {
	defer close(l.done)
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		data := make([]byte, l.nbytes)
		for j := range data {
			data[j] = byte(rand.IntN(256))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p := fmt.Sprintf("/rot-%d", i)
		if _, err := l.c.Put(ctx, p, bytes.NewReader(data), client.PutOptions{}); err != nil {
			l.fail(fmt.Errorf("put %s: %w", p, err))
		} else {
			var out bytes.Buffer
			if _, err := l.c.Get(ctx, p, &out); err != nil {
				l.fail(fmt.Errorf("get %s: %w", p, err))
			} else if !bytes.Equal(out.Bytes(), data) {
				l.fail(fmt.Errorf("get %s: %d bytes differ from what was written", p, out.Len()))
			}
		}
		cancel()
		l.ops.Add(1)
	}
}

func (l *ioLoop) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// waitOps waits until n more operations completed.
func (l *ioLoop) waitOps(t *testing.T, n int64) {
	t.Helper()
	target := l.ops.Load() + n
	for deadline := time.Now().Add(60 * time.Second); l.ops.Load() < target; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("I/O stalled at %d operations", l.ops.Load())
		}
	}
}

// serverSerial is the serial of the certificate a new connection to addr
// sees.
func serverSerial(t *testing.T, id *pki.Identity, addr string) *big.Int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, id.ClientTLS(pki.RoleMeta, pki.RoleData))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func waitSerial(t *testing.T, id *pki.Identity, addr string, want *big.Int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if got := serverSerial(t, id, addr); got.Cmp(want) == 0 {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s still shows serial %x, want %x", addr, got, want)
		}
	}
}

// TestRotationUnderIO: a client keeps writing and reading while the
// servers' certificate files are replaced, and then the whole CA is
// switched (a bundle of old and new CA, certificates from the new one,
// then the old CA dropped). No operation fails, and new connections see
// each new certificate.
func TestRotationUnderIO(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 1, Data: 6})
	for _, r := range pki.Roles {
		c.Identity(r).SetReloadInterval(20 * time.Millisecond)
	}
	cl, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	io := startIO(t, cl)
	io.waitOps(t, 2)
	metaAddr, dataAddr := c.Meta[0].Cfg.GRPCAddr, c.Data[0].Srv.Addr()
	issue := func(caDir string, r pki.Role) *big.Int {
		t.Helper()
		cert, err := pki.Issue(caDir, pki.Request{Role: r, Name: "rotated-" + string(r)}, c.TLSDir())
		if err != nil {
			t.Fatal(err)
		}
		return cert.SerialNumber
	}

	// 1. New leaf certificates, same CA.
	metaSerial, dataSerial := issue(c.CADir(), pki.RoleMeta), issue(c.CADir(), pki.RoleData)
	waitSerial(t, c.ClientTLS(), metaAddr, metaSerial)
	waitSerial(t, c.ClientTLS(), dataAddr, dataSerial)
	io.waitOps(t, 3)

	// 2. CA switch: the new CA's directory holds the bundle (new + old),
	// which Issue copies next to every certificate it writes.
	ca2 := filepath.Join(t.TempDir(), "ca2")
	if err := pki.InitCA(ca2, "rotated"); err != nil {
		t.Fatal(err)
	}
	oldCA, _ := os.ReadFile(filepath.Join(c.CADir(), pki.CACertFile))
	newCA, _ := os.ReadFile(filepath.Join(ca2, pki.CACertFile))
	if err := os.WriteFile(filepath.Join(ca2, pki.CACertFile), append(append([]byte(nil), newCA...), oldCA...), 0o644); err != nil {
		t.Fatal(err)
	}
	issue(ca2, pki.RoleClient) // also puts the bundle into the TLS directory
	io.waitOps(t, 2)
	metaSerial, dataSerial = issue(ca2, pki.RoleMeta), issue(ca2, pki.RoleData)
	issue(ca2, pki.RoleBootctl)
	waitSerial(t, c.ClientTLS(), metaAddr, metaSerial)
	waitSerial(t, c.ClientTLS(), dataAddr, dataSerial)
	io.waitOps(t, 3)

	// 3. Every certificate is from the new CA: drop the old one.
	tmp := filepath.Join(c.TLSDir(), "ca.crt.new")
	if err := os.WriteFile(tmp, newCA, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.TLSDir(), pki.CACertFile)); err != nil {
		t.Fatal(err)
	}
	io.waitOps(t, 3)
	// A fresh client (new connections everywhere) works on the new CA only.
	fresh, err := client.New(client.Config{MetaAddrs: c.MetaAddrs(), TLS: c.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fresh.Put(ctx, "/fresh", bytes.NewReader([]byte("after the switch")), client.PutOptions{}); err != nil {
		t.Fatalf("fresh client after the CA switch: %v", err)
	}
	io.halt()
	if n := io.errs.Load(); n > 0 {
		t.Fatalf("%d of %d operations failed during rotation; first: %v", n, io.ops.Load(), io.first)
	}
	t.Logf("%d write+read rounds, none failed", io.ops.Load())
}
