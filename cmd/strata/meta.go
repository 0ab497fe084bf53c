package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/metaserver"
)

func init() {
	register(command{name: "meta", summary: "run one metaserver (a raft voter); meta members|add|remove change the voters", run: runMeta})
}

func runMeta(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "members":
			return runMetaMembers(ctx, args[1:], stdout, stderr)
		case "add":
			return runMetaAdd(ctx, args[1:], stdout, stderr)
		case "remove":
			return runMetaRemove(ctx, args[1:], stdout, stderr)
		}
	}
	return runMetaServer(ctx, args, stdout, stderr)
}

func runMetaServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("meta", stderr)
	cfg := metaserver.DefaultConfig()
	fs.StringVar(&cfg.ID, "id", envDefault("meta-id", ""), "raft server id, unique in the cluster (required)")
	fs.StringVar(&cfg.Dir, "dir", envDefault("meta-dir", ""), "directory for the raft log and snapshots (required)")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "127.0.0.1:7410", "raft listen address")
	fs.StringVar(&cfg.RaftAdvertise, "raft-advertise", "", "raft address peers dial (default: --raft-addr)")
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", "127.0.0.1:7400", "gRPC listen address")
	fs.StringVar(&cfg.GRPCAdvertise, "grpc-advertise", "", "gRPC address clients are sent to (default: the listen address)")
	peers := fs.String("peers", "", "initial voters of a new cluster: id=raftaddr,... (this server included); ignored once the directory holds state")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address")
	fs.StringVar(&cfg.ServiceIP, "service-ip", envDefault("service-ip", ""), "dedicated service address held by the leader, e.g. 10.77.0.100/24 (or 127.0.0.100 for a dev cluster)")
	fs.IntVar(&cfg.ServicePort, "service-port", 0, "port served on the service ip (default: the port of --grpc-addr)")
	fs.StringVar(&cfg.ServiceIface, "service-iface", envDefault("service-iface", ""), "interface the leader adds the service ip to (not needed for a loopback address)")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", cfg.HeartbeatTimeout, "raft heartbeat timeout")
	fs.DurationVar(&cfg.ElectionTimeout, "election-timeout", cfg.ElectionTimeout, "raft election timeout")
	fs.DurationVar(&cfg.LeaderLeaseTimeout, "leader-lease", cfg.LeaderLeaseTimeout, "raft leader lease")
	fs.Uint64Var(&cfg.SnapshotThreshold, "snapshot-threshold", cfg.SnapshotThreshold, "log entries between snapshots")
	fs.DurationVar(&cfg.SnapshotInterval, "snapshot-interval", cfg.SnapshotInterval, "how often to check whether to snapshot")
	fs.DurationVar(&cfg.DataServerGrace, "dataserver-grace", cfg.DataServerGrace, "a dataserver silent this long gets no new shards")
	fs.DurationVar(&cfg.CapLifetime, "cap-lifetime", cfg.CapLifetime, "how long a shard capability stays valid (clients refresh at half)")
	fs.DurationVar(&cfg.CapActivationDelay, "cap-activation-delay", cfg.CapActivationDelay, "after `strata cap rotate`, sign with the new key only after this (longer than the dataservers' heartbeat)")
	fs.DurationVar(&cfg.RepairDelay, "repair-delay", cfg.RepairDelay, "a dataserver silent this long is lost: its shards are rebuilt elsewhere")
	fs.DurationVar(&cfg.AuditInterval, "audit-interval", cfg.AuditInterval, "how often shard inventories are checked against the metadata")
	fs.DurationVar(&cfg.OrphanGrace, "orphan-grace", cfg.OrphanGrace, "an unreferenced shard older than this is deleted by the audit")
	level := fs.String("log-level", envDefault("log-level", "info"), "debug, info, warn or error")
	tf := addTLSFlags(fs, false)
	auditPath := fs.String("audit-log", envDefault("audit-log", ""), "audit log file (default: audit.log in --dir)")
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var err error
	if cfg.Peers, err = parsePeers(*peers); err != nil {
		return err
	}
	if cfg.Logger, err = newLogger(stderr, *level); err != nil {
		return err
	}
	if cfg.TLS, err = tf.identity(pki.RoleMeta, cfg.Logger); err != nil {
		return err
	}
	if *auditPath == "" && cfg.Dir != "" {
		*auditPath = filepath.Join(cfg.Dir, "audit.log")
	}
	if cfg.Audit, err = openDaemonAudit(*auditPath, cfg.Logger); err != nil {
		return err
	}
	defer cfg.Audit.Close()
	srv, err := metaserver.New(cfg)
	if err != nil {
		return usageErr("%v", err)
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return srv.Close()
}

// parsePeers reads "id=host:port,id=host:port".
func parsePeers(s string) ([]metaserver.Peer, error) {
	var out []metaserver.Peer
	for _, item := range splitList(s) {
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, usageErr("--peers item %q: want id=host:port", item)
		}
		out = append(out, metaserver.Peer{ID: id, RaftAddr: addr})
	}
	return out, nil
}

func runMetaMembers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("meta members", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 0, 0, "meta members [--meta ADDRS]"); err != nil {
		return err
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT\tGRPC\tROLE")
	for _, m := range st.Members {
		role := "follower"
		if m.Leader {
			role = "leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Id, m.RaftAddr, m.GrpcAddr, role)
	}
	return tw.Flush()
}

func runMetaAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("meta add", stderr)
	cf := addClientFlags(fs)
	id := fs.String("id", "", "raft id of the new voter (required)")
	raftAddr := fs.String("raft-addr", "", "its raft address (required)")
	nonvoter := fs.Bool("nonvoter", false, "add it as a non-voter: it catches up outside the quorum; add it again without --nonvoter to promote it")
	if err := parse(fs, args, 0, 0, "meta add --id ID --raft-addr HOST:PORT [--nonvoter] (start the new server first, with an empty --dir and no --peers)"); err != nil {
		return err
	}
	if *id == "" || *raftAddr == "" {
		return usageErr("--id and --raft-addr are required")
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if *nonvoter {
		return c.AddNonvoter(ctx, *id, *raftAddr)
	}
	return c.AddMember(ctx, *id, *raftAddr)
}

func runMetaRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("meta remove", stderr)
	cf := addClientFlags(fs)
	id := fs.String("id", "", "raft id of the voter to remove (required)")
	if err := parse(fs, args, 0, 0, "meta remove --id ID"); err != nil {
		return err
	}
	if *id == "" {
		return usageErr("--id is required")
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.RemoveMember(ctx, *id)
}
