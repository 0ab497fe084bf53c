package metaserver

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// metrics of one metaserver. With a nil Registerer they are still counted
// but exported nowhere (nil-safe, no global registration).
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// unregister removes every collector again, so that a server restarted
	// in the same process (dev cluster, tests) can register anew.
	unregister func()
	heal       *healMetrics
}

func newMetrics(reg prometheus.Registerer, s *Server) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "strata", Subsystem: "meta", Name: "requests_total",
			Help: "gRPC requests served, by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "strata", Subsystem: "meta", Name: "request_seconds",
			Help:    "gRPC request latency by method.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12),
		}, []string{"method"}),
	}
	m.heal = newHealMetrics(s)
	m.unregister = func() {}
	if reg == nil {
		return m
	}
	var cs []prometheus.Collector
	register := func(c ...prometheus.Collector) {
		reg.MustRegister(c...)
		cs = append(cs, c...)
	}
	m.unregister = func() {
		for _, c := range cs {
			reg.Unregister(c)
		}
	}
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "strata", Subsystem: "meta", Name: name, Help: help}, fn)
	}
	stat := func(f func(FSMStats) uint64) func() float64 {
		return func() float64 { return float64(f(s.Stats())) }
	}
	register(m.requests, m.latency,
		gauge("is_leader", "1 when this server is the ready raft leader.", func() float64 {
			if s.IsLeader() {
				return 1
			}
			return 0
		}),
		gauge("inodes", "Inodes in the namespace.", stat(func(x FSMStats) uint64 { return x.Inodes })),
		gauge("chunks", "Chunks referenced by files.", stat(func(x FSMStats) uint64 { return x.Chunks })),
		gauge("logical_bytes", "Sum of file sizes.", stat(func(x FSMStats) uint64 { return x.Logical })),
		gauge("garbage_chunks", "Chunks waiting for their shards to be deleted.", stat(func(x FSMStats) uint64 { return x.Garbage })),
		gauge("applied_index", "Last raft index applied to the FSM.", func() float64 { return float64(s.fsm.AppliedIndex()) }),
		gauge("refused_entries", "Raft entries refused (unknown version/type).", func() float64 { return float64(s.fsm.refused.Load()) }),
	)
	for _, name := range []string{"term", "commit_index", "last_log_index", "last_snapshot_index", "num_peers"} {
		register(gauge("raft_"+name, "Raft's "+name+".", s.raftStat(name)))
	}
	register(
		gauge("raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 {
			if s.parts == nil {
				return 3
			}
			return float64(s.parts.raft.State())
		}),
		gauge("raft_last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader).", func() float64 {
			if s.parts == nil {
				return 0
			}
			if d := time.Since(s.parts.raft.LastContact()); s.parts.raft.State() != raftLeader && !s.parts.raft.LastContact().IsZero() {
				return d.Seconds()
			}
			return 0
		}),
	)
	register(m.heal.collectors()...)
	return m
}

// raftStat reads one numeric field of raft.Stats().
func (s *Server) raftStat(name string) func() float64 {
	return func() float64 {
		if s.parts == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(s.parts.raft.Stats()[name], 64)
		return v
	}
}

func (m *metrics) interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.latency.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}
