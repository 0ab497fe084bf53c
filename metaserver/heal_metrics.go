package metaserver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-hpc/strata/proto/stratapb"
)

// healMetrics export the repair scheduler's view: stripe health from the
// last scan, the queue, the throttle, and what was done.
type healMetrics struct {
	s              *Server
	repairedShards *prometheus.CounterVec
	repairedBytes  *prometheus.CounterVec
}

func newHealMetrics(s *Server) *healMetrics {
	return &healMetrics{
		s: s,
		repairedShards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "strata", Subsystem: "repair", Name: "shards_total",
			Help: "Shards rebuilt and committed by this leader, by kind (repair, drain, rebalance).",
		}, []string{"kind"}),
		repairedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "strata", Subsystem: "repair", Name: "bytes_total",
			Help: "Bytes of shards rebuilt and committed by this leader, by kind.",
		}, []string{"kind"}),
	}
}

func (m *metrics) repaired(k taskKind, bytes uint64) {
	m.heal.repairedShards.WithLabelValues(k.String()).Inc()
	m.heal.repairedBytes.WithLabelValues(k.String()).Add(float64(bytes))
}

func (h *healMetrics) collectors() []prometheus.Collector {
	s := h.s
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "strata", Subsystem: "repair", Name: name, Help: help}, fn)
	}
	st := func(f func(*stratapb.RepairStatusResponse) float64) func() float64 {
		return func() float64 { return f(s.repairStatus()) }
	}
	return []prometheus.Collector{
		h.repairedShards, h.repairedBytes,
		gauge("healthy_stripes", "Stripes with every shard on an up server (leader's last scan).", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.HealthyStripes) })),
		gauge("degraded_stripes", "Readable stripes with a shard missing, bad or down.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.DegradedStripes) })),
		gauge("lost_stripes", "Stripes with fewer than k shards left.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.LostStripes) })),
		gauge("queue_shards", "Shards waiting to be rebuilt (repair, drain, rebalance).", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.QueueShards) })),
		gauge("queue_bytes", "Bytes of shards waiting to be rebuilt.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.QueueBytes) })),
		gauge("in_flight", "Shard rebuilds running.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.InFlight) })),
		gauge("rate_bytes_per_second", "Measured repair rate over the last 10 s.", st(func(r *stratapb.RepairStatusResponse) float64 { return r.RateBytesPerSec })),
		gauge("eta_seconds", "Estimated time to empty the queue (-1: unknown).", st(func(r *stratapb.RepairStatusResponse) float64 { return r.EtaSeconds })),
		gauge("rate_limit_bytes_per_second", "Repair bandwidth limit.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.Config.GetRateBytesPerSec()) })),
		gauge("concurrency", "Repair concurrency limit.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(r.Config.GetConcurrency()) })),
		gauge("lost_servers", "Dataservers declared lost.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(len(r.LostServers)) })),
		gauge("draining_servers", "Dataservers being drained.", st(func(r *stratapb.RepairStatusResponse) float64 { return float64(len(r.Drains)) })),
		gauge("failures", "Rebuilds that failed or were not committed, since this server started.", func() float64 { return float64(s.repair.failed.Load()) }),
		gauge("orphans_deleted", "Orphan shards deleted by the inventory audit.", func() float64 { return float64(s.audit.orphansDeleted.Load()) }),
		gauge("audit_missing_found", "Missing shards found by the inventory audit.", func() float64 { return float64(s.audit.missingFound.Load()) }),
	}
}
