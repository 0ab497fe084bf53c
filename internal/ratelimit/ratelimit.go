// Package ratelimit keeps one token bucket per client identity, for the
// metadata service's gRPC interceptor and the boot controller's HTTP
// middleware. A client over its rate gets ResourceExhausted (HTTP 429),
// which the client library retries with back-off.
//
// Who a client is comes from one place, Identity (gRPC) and HTTPIdentity:
// the subject of the verified peer certificate once mutual TLS is on, the
// peer's IP address until then.
package ratelimit

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/strata-hpc/strata/internal/rpcerr"
)

// Config sets the rate: Rate requests per second on average per client,
// with bursts of up to Burst. Rate 0 turns limiting off.
type Config struct {
	Rate  float64
	Burst int
}

// Default is generous: far above what one client of the test suite or the
// benchmarks sends (the raw unary getattr benchmark reaches ~30,000/s), so
// only a runaway or hostile client meets it. NOTES.md says why.
func Default() Config { return Config{Rate: 50000, Burst: 100000} }

// maxIdle is how long a bucket may stay untouched before it is forgotten
// (it is full again by then, so forgetting changes nothing).
const maxIdle = time.Minute

type bucket struct {
	tokens float64
	last   time.Time
}

// Limiter holds the buckets. The zero value and a nil *Limiter allow
// everything.
type Limiter struct {
	cfg   Config
	now   func() time.Time
	mu    sync.Mutex
	b     map[string]*bucket
	sweep time.Time
}

// New returns a limiter for cfg.
func New(cfg Config) *Limiter {
	return &Limiter{cfg: cfg, now: time.Now, b: make(map[string]*bucket)}
}

// Allow takes one token from id's bucket and reports whether there was one.
func (l *Limiter) Allow(id string) bool {
	if l == nil || l.cfg.Rate <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.forgetIdle(now)
	bk, ok := l.b[id]
	if !ok {
		bk = &bucket{tokens: float64(max(l.cfg.Burst, 1)), last: now}
		l.b[id] = bk
	}
	bk.tokens = min(float64(max(l.cfg.Burst, 1)), bk.tokens+now.Sub(bk.last).Seconds()*l.cfg.Rate)
	bk.last = now
	if bk.tokens < 1 {
		return false
	}
	bk.tokens--
	return true
}

// forgetIdle drops buckets idle for maxIdle, at most once per maxIdle, so
// that clients that come and go do not grow the map without bound.
func (l *Limiter) forgetIdle(now time.Time) {
	if now.Sub(l.sweep) < maxIdle {
		return
	}
	l.sweep = now
	for id, bk := range l.b {
		if now.Sub(bk.last) > maxIdle {
			delete(l.b, id)
		}
	}
}

// Identity names the client of a gRPC call: the subject of its verified
// TLS certificate, else its IP address (all connections from one host
// share a bucket, so a client cannot escape its limit by reconnecting).
func Identity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "unknown"
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		if id := tlsIdentity(&ti.State); id != "" {
			return id
		}
	}
	return hostOf(p.Addr.String())
}

// HTTPIdentity is Identity for an HTTP request.
func HTTPIdentity(r *http.Request) string {
	if id := tlsIdentity(r.TLS); id != "" {
		return id
	}
	return hostOf(r.RemoteAddr)
}

func tlsIdentity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return "cert:" + cs.VerifiedChains[0][0].Subject.String()
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// UnaryInterceptor refuses calls over the limit with ResourceExhausted.
func UnaryInterceptor(l *Limiter) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if id := Identity(ctx); !l.Allow(id) {
			return nil, rpcerr.RateLimited(id)
		}
		return h(ctx, req)
	}
}

// StreamInterceptor counts each stream as one request.
func StreamInterceptor(l *Limiter) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if id := Identity(ss.Context()); !l.Allow(id) {
			return rpcerr.RateLimited(id)
		}
		return h(srv, ss)
	}
}

// ServerOptions returns the interceptors for a gRPC server.
func ServerOptions(l *Limiter) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(UnaryInterceptor(l)), grpc.ChainStreamInterceptor(StreamInterceptor(l))}
}

// Middleware answers 429 Too Many Requests to a client over the limit.
func Middleware(l *Limiter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.Allow(HTTPIdentity(r)) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "rate limit exceeded; retry later", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}
