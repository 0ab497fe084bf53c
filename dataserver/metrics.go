package dataserver

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics of one dataserver. They are created per server and registered on
// the Registerer the caller passes in, never globally, so that many servers
// fit in one process; give each server its own Registerer (or wrap a shared
// one with prometheus.WrapRegistererWith and a distinguishing label).
type metrics struct {
	ops          *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	bytesRead    prometheus.Counter
	bytesWritten prometheus.Counter
	all          []prometheus.Collector
	heal         healCounters
}

const namespace = "strata_dataserver"

func newMetrics(st *Store) *metrics {
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "Shard requests served, by operation (write, read, delete, stat) and gRPC code.",
		}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "request_duration_seconds",
			Help: "Latency of shard requests, by operation.",
			// 50µs (page-cache read of a small range) to ~13s (a fsync on
			// a disk that is dying).
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10),
		}, []string{"op"}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "read_bytes_total", Help: "Shard bytes returned to readers.",
		}),
		bytesWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "written_bytes_total", Help: "Shard data bytes stored.",
		}),
	}
	stats := func(f func(StoreStats) uint64) func() float64 {
		return func() float64 { return float64(f(st.Stats())) }
	}
	m.all = []prometheus.Collector{
		m.ops, m.latency, m.bytesRead, m.bytesWritten,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "checksum_failures_total",
			Help: "Reads that met a shard failing its checksum or header check.",
		}, stats(func(s StoreStats) uint64 { return s.ChecksumFailures })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "shards", Help: "Shards stored.",
		}, stats(func(s StoreStats) uint64 { return s.Shards })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "used_bytes", Help: "Bytes of shard files on disk.",
		}, stats(func(s StoreStats) uint64 { return s.BytesUsed })),
	}
	m.all = append(m.all, m.heal.collectors()...)
	return m
}

// register registers every metric on r and returns a function that
// unregisters them, so a server restarted in the same process can register
// again. A nil r registers nothing.
func (m *metrics) register(r prometheus.Registerer) (func(), error) {
	if r == nil {
		return func() {}, nil
	}
	var done []prometheus.Collector
	undo := func() {
		for _, c := range done {
			r.Unregister(c)
		}
	}
	for _, c := range m.all {
		if err := r.Register(c); err != nil {
			undo()
			return nil, fmt.Errorf("dataserver: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return undo, nil
}

// opNames maps gRPC method names to the op label.
var opNames = map[string]string{
	"WriteShard": "write", "ReadShard": "read", "DeleteShard": "delete", "StatShard": "stat",
}

// unaryInterceptor counts requests and times them.
func (m *metrics) unaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		op, ok := opNames[path.Base(info.FullMethod)]
		if !ok {
			op = "other"
		}
		m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
		m.ops.WithLabelValues(op, status.Code(err).String()).Inc()
		return resp, err
	}
}

// gathererOf returns r as a Gatherer if it is one (a *prometheus.Registry).
func gathererOf(r prometheus.Registerer) (prometheus.Gatherer, bool) {
	g, ok := r.(prometheus.Gatherer)
	return g, ok && g != nil
}
