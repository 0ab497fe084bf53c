package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/strata-hpc/strata/internal/audit"
)

// HandshakeTimeout bounds a server-side TLS handshake on a Listener: a
// peer that connects and says nothing must not hold a goroutine forever.
const HandshakeTimeout = 10 * time.Second

// Listener wraps a TCP listener: each accepted connection completes its
// TLS handshake (in its own goroutine, so a slow peer delays no one)
// before Accept returns it as a *tls.Conn. Failed handshakes are audited
// and the connection dropped. HTTP servers and the raft transport use it;
// because Accept returns a *tls.Conn, net/http fills in r.TLS.
type Listener struct {
	inner   net.Listener
	cfg     *tls.Config
	fails   *failureLog
	log     *slog.Logger
	service string

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	acceptErr error
	mu        sync.Mutex
}

// NewListener starts handshaking connections accepted by inner with cfg.
// service names the listener in audit records ("raft", "bootctl-http").
func NewListener(inner net.Listener, cfg *tls.Config, a *audit.Log, log *slog.Logger, service string) *Listener {
	l := &Listener{inner: inner, cfg: cfg, fails: newFailureLog(a, log, service), log: logOrDiscard(log), service: service,
		conns: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait and go
				// on, as net/http does, rather than stop serving.
				l.log.Warn("accept failed; retrying", "service", l.service, "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			l.mu.Lock()
			l.acceptErr = err
			l.mu.Unlock()
			l.Close()
			return
		}
		go l.handshake(c)
	}
}

func (l *Listener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.fails.record(c.RemoteAddr(), err)
		c.Close()
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		tc.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		err := l.acceptErr
		l.mu.Unlock()
		if err == nil || errors.Is(err, net.ErrClosed) {
			err = net.ErrClosed
		}
		return nil, err
	}
}

// Close stops accepting.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Dial opens a TLS connection as a client of this identity to a server of
// one of serverRoles, completing the handshake before it returns (the
// raft transport dials its peers this way).
func (id *Identity) Dial(ctx context.Context, dial func(ctx context.Context) (net.Conn, error), serverRoles ...Role) (net.Conn, error) {
	raw, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, id.ClientTLS(serverRoles...))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}
