package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"

	"github.com/strata-hpc/strata/dataserver"
	"github.com/strata-hpc/strata/internal/capability"
	"github.com/strata-hpc/strata/internal/pki"
)

func init() {
	register(command{name: "data", summary: "run one dataserver; data drain ID, data remove ID", run: runData})
}

func runData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if ok, err := runDataAdmin(ctx, args, stdout, stderr); ok {
		return err
	}
	fs := newFlags("data", stderr)
	cfg := dataserver.DefaultConfig()
	dirs := fs.String("dir", envDefault("data-dir", ""), "shard directories, comma-separated (required)")
	fs.StringVar(&cfg.ListenAddr, "listen", "127.0.0.1:7420", "gRPC listen address")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise", "", "address clients dial (default: the listen address)")
	meta := fs.String("meta", envDefault("meta", defaultMetaAddrs()), "metadata service addresses, comma-separated")
	zone := fs.String("zone", "", "failure domain: zone label")
	rack := fs.String("rack", "", "failure domain: rack label")
	host := fs.String("host", "", "failure domain: host label")
	fs.BoolVar(&cfg.Fsync, "fsync", cfg.Fsync, "fsync every shard before acknowledging it")
	fs.Uint64Var(&cfg.ReserveBytes, "reserve", cfg.ReserveBytes, "bytes kept free on each disk")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat", cfg.HeartbeatInterval, "heartbeat interval")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address")
	fs.Int64Var(&cfg.ScrubRate, "scrub-rate", dataserver.DefaultScrubRate, "bytes per second the scrubber re-reads (negative: no scrubbing)")
	fs.DurationVar(&cfg.ScrubInterval, "scrub-interval", dataserver.DefaultScrubInterval, "time between the starts of two scrub passes")
	fs.DurationVar(&cfg.CapSkew, "cap-skew", capability.DefaultSkew, "accept a shard capability this long after its expiry (clock difference to the metaservers)")
	level := fs.String("log-level", envDefault("log-level", "info"), "debug, info, warn or error")
	tf := addTLSFlags(fs, false)
	auditPath := fs.String("audit-log", envDefault("audit-log", ""), "audit log file: refused handshakes, calls and shard capabilities (default: audit.log in the first --dir)")
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Dirs, cfg.MetaAddrs = splitList(*dirs), splitList(*meta)
	if len(cfg.Dirs) == 0 {
		return usageErr("--dir is required")
	}
	cfg.Labels = map[string]string{}
	for k, v := range map[string]string{"zone": *zone, "rack": *rack, "host": *host} {
		if v != "" {
			cfg.Labels[k] = v
		}
	}
	var err error
	if cfg.Logger, err = newLogger(stderr, *level); err != nil {
		return err
	}
	if cfg.TLS, err = tf.identity(pki.RoleData, cfg.Logger); err != nil {
		return err
	}
	if *auditPath == "" {
		*auditPath = filepath.Join(cfg.Dirs[0], "audit.log")
	}
	if cfg.Audit, err = openDaemonAudit(*auditPath, cfg.Logger); err != nil {
		return err
	}
	defer cfg.Audit.Close()
	srv, err := dataserver.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return srv.Close()
}
