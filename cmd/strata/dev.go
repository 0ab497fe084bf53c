package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strata-hpc/strata/dataserver"
	"github.com/strata-hpc/strata/internal/audit"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/metaserver"
)

func init() {
	register(command{name: "dev", summary: "run a whole cluster on this machine (3 metaservers, 6 dataservers)", run: runDev})
}

// devOptions are the flags of `strata dev`.
type devOptions struct {
	dir      string
	basePort int
	metas    int
	datas    int
	fsync    bool
	level    string
	mount    string
	vip      string
	insecure bool
}

func defaultDevDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "strata", "dev")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "strata", "dev")
	}
	return "strata-dev"
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dev", stderr)
	var o devOptions
	fs.StringVar(&o.dir, "dir", envDefault("dev-dir", defaultDevDir()), "directory holding all of the cluster's state")
	fs.IntVar(&o.basePort, "base-port", devBasePort, "first port: metaservers gRPC base+0.., raft base+10.., dataservers base+20.., metrics base+30")
	fs.IntVar(&o.metas, "metas", devMetas, "metaservers (1, 3 or 5)")
	fs.IntVar(&o.datas, "datas", 6, "dataservers")
	fs.BoolVar(&o.fsync, "fsync", true, "fsync shards before acknowledging writes")
	fs.StringVar(&o.level, "log-level", envDefault("log-level", "warn"), "debug, info, warn or error")
	fs.StringVar(&o.mount, "mount", "", "also mount the cluster with FUSE at this directory")
	fs.StringVar(&o.vip, "service-ip", devServiceIP, "loopback service IP the leader serves on, at --base-port (\"\" for none)")
	fs.BoolVar(&o.insecure, "insecure", false, "plain text instead of mutual TLS (certificates are made under --dir on first start)")
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.metas != 1 && o.metas != 3 && o.metas != 5 {
		return usageErr("--metas must be 1, 3 or 5, not %d", o.metas)
	}
	if o.datas < 1 || o.datas > 9 {
		return usageErr("--datas must be between 1 and 9, not %d", o.datas)
	}
	if o.basePort < 1024 || o.basePort > 65000 {
		return usageErr("--base-port %d out of range 1024..65000", o.basePort)
	}
	log, err := newLogger(stderr, o.level)
	if err != nil {
		return err
	}
	dc := &devCluster{o: o, log: log, reg: prometheus.NewRegistry()}
	defer dc.stop()
	if err := dc.start(ctx); err != nil {
		return err
	}
	keyID, err := ensureDevKey(o.dir)
	if err != nil {
		return err
	}
	if o.mount != "" {
		unmount, err := mountDev(ctx, dc.metaAddrs(), o.mount, filepath.Join(o.dir, "cache"), dc.tls[pki.RoleClient], log)
		if err != nil {
			return fmt.Errorf("mount %s: %w", o.mount, err)
		}
		defer unmount() // before the servers stop (defers run last-in first-out)
	}
	fmt.Fprintf(stdout, "strata dev cluster is up (state in %s)\n", o.dir)
	if o.mount != "" {
		fmt.Fprintf(stdout, "  mounted at:  %s\n", o.mount)
	}
	fmt.Fprintf(stdout, "  metadata:    %s\n", strings.Join(dc.metaAddrs(), ","))
	if o.vip != "" {
		fmt.Fprintf(stdout, "  service ip:  %s:%d (held by the leader)\n", o.vip, o.basePort)
	}
	fmt.Fprintf(stdout, "  dataservers: %d on 127.0.0.1:%d-%d\n", o.datas, o.basePort+20, o.basePort+20+o.datas-1)
	scheme := "https"
	if o.insecure {
		scheme = "http"
	}
	fmt.Fprintf(stdout, "  metrics:     %s://127.0.0.1:%d/metrics\n", scheme, o.basePort+30)
	fmt.Fprintf(stdout, "  BMC key:     %s (key %s; node and bootctl commands find it by themselves)\n", devKeyFile(o.dir), keyID)
	if !o.insecure {
		fmt.Fprintf(stdout, "  TLS:         certificates in %s (clients on this machine find them; elsewhere --tls-dir)\n", devTLSDir(o.dir))
	}
	fmt.Fprintf(stdout, "try: strata status; strata put FILE /FILE; strata ls /   (Ctrl-C stops the cluster)\n")
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping...")
	return nil
}

// devCluster runs every server of the dev cluster in this one process.
type devCluster struct {
	o     devOptions
	log   *slog.Logger
	reg   *prometheus.Registry
	peers []metaserver.Peer
	mu    sync.Mutex           // guards metas against the drill's kill/restart
	metas []*metaserver.Server // nil while killed by a drill
	datas []*dataserver.Server
	http  *http.Server
	tls   map[pki.Role]*pki.Identity // nil with --insecure
	audit *audit.Log
}

func (d *devCluster) metaAddrs() []string {
	var out []string
	for i := 0; i < d.o.metas; i++ {
		out = append(out, fmt.Sprintf("127.0.0.1:%d", d.o.basePort+i))
	}
	return out
}

func (d *devCluster) start(ctx context.Context) error {
	if err := os.MkdirAll(d.o.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", d.o.dir, err)
	}
	var err error
	if d.audit, err = devAudit(d.o.dir, d); err != nil {
		return err
	}
	if d.o.insecure {
		d.log.Warn("running WITHOUT TLS (--insecure): connections are neither encrypted nor authenticated")
	} else if d.tls, err = devTLS(d.o.dir, d.o.vip); err != nil {
		return err
	}
	if err := d.startMetrics(); err != nil {
		return err
	}
	var peers []metaserver.Peer
	for i := 0; i < d.o.metas; i++ {
		peers = append(peers, metaserver.Peer{ID: fmt.Sprintf("m%d", i+1), RaftAddr: fmt.Sprintf("127.0.0.1:%d", d.o.basePort+10+i)})
	}
	d.peers = peers
	d.metas = make([]*metaserver.Server, len(peers))
	for i := range peers {
		if err := d.startMeta(ctx, i); err != nil {
			return err
		}
	}
	for i := 0; i < d.o.datas; i++ {
		if err := d.startData(ctx, i); err != nil {
			return err
		}
	}
	return d.waitReady(ctx)
}

func (d *devCluster) startMeta(ctx context.Context, i int) error {
	peers := d.peers
	cfg := metaserver.DefaultConfig()
	cfg.ID = peers[i].ID
	cfg.Dir = filepath.Join(d.o.dir, "meta", cfg.ID)
	cfg.RaftAddr = peers[i].RaftAddr
	cfg.GRPCAddr = d.metaAddrs()[i]
	cfg.Peers = peers
	cfg.Logger = d.log.With("server", cfg.ID)
	cfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"server": cfg.ID}, d.reg)
	cfg.TLS, cfg.Audit = d.tls[pki.RoleMeta], d.audit
	if d.o.vip != "" {
		cfg.ServiceIP, cfg.ServicePort = d.o.vip, d.o.basePort
	}
	srv, err := metaserver.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("metaserver %s: %w", cfg.ID, err)
	}
	d.mu.Lock()
	d.metas[i] = srv
	d.mu.Unlock()
	return nil
}

func (d *devCluster) startData(ctx context.Context, i int) error {
	cfg := dataserver.DefaultConfig()
	name := fmt.Sprintf("d%d", i+1)
	cfg.Dirs = []string{filepath.Join(d.o.dir, "data", name)}
	cfg.ListenAddr = fmt.Sprintf("127.0.0.1:%d", d.o.basePort+20+i)
	cfg.MetaAddrs = d.metaAddrs()
	cfg.Fsync = d.o.fsync
	cfg.Labels = map[string]string{"host": name}
	cfg.Logger = d.log.With("server", name)
	cfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"server": name}, d.reg)
	cfg.TLS, cfg.Audit = d.tls[pki.RoleData], d.audit
	srv, err := dataserver.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		srv.Close()
		return fmt.Errorf("dataserver %s: %w", name, err)
	}
	d.datas = append(d.datas, srv)
	return nil
}

func (d *devCluster) startMetrics() error {
	addr := fmt.Sprintf("127.0.0.1:%d", d.o.basePort+30)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener %s: %w (is another strata dev running?)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
	// Profiles of the whole dev cluster, for performance work.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	// Failover drills: kill and restart a metaserver of this dev cluster.
	mux.HandleFunc("POST /dev/meta/{id}/kill", d.handleKill)
	mux.HandleFunc("POST /dev/meta/{id}/restart", d.handleRestart)
	d.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// Metrics, profiles and the drill's kill/restart: any certificate of
	// this cluster (the drill presents its client certificate).
	lis = pki.WrapListener(d.tls[pki.RoleMeta], lis, d.audit, d.log, "dev-http")
	go func() {
		if err := d.http.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics server", "err", err)
		}
	}()
	return nil
}

// waitReady waits for a leader and for every dataserver to register.
func (d *devCluster) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		registered := 0
		for _, ds := range d.datas {
			if ds.ID() != 0 {
				registered++
			}
		}
		for _, m := range d.metas {
			if m != nil && m.IsLeader() && registered == len(d.datas) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("cluster did not become ready within 30s (see the log above)")
}

func (d *devCluster) metaIndex(id string) int {
	for i, p := range d.peers {
		if p.ID == id {
			return i
		}
	}
	return -1
}

func (d *devCluster) handleKill(w http.ResponseWriter, r *http.Request) {
	i := d.metaIndex(r.PathValue("id"))
	if i < 0 {
		http.Error(w, "no such metaserver", http.StatusNotFound)
		return
	}
	d.mu.Lock()
	srv := d.metas[i]
	d.metas[i] = nil
	d.mu.Unlock()
	if srv == nil {
		http.Error(w, "already stopped", http.StatusConflict)
		return
	}
	srv.Close()
	fmt.Fprintln(w, "killed")
}

func (d *devCluster) handleRestart(w http.ResponseWriter, r *http.Request) {
	i := d.metaIndex(r.PathValue("id"))
	if i < 0 {
		http.Error(w, "no such metaserver", http.StatusNotFound)
		return
	}
	d.mu.Lock()
	running := d.metas[i] != nil
	d.mu.Unlock()
	if running {
		http.Error(w, "running", http.StatusConflict)
		return
	}
	var err error
	for try := 0; try < 50; try++ { // its ports may linger for a moment
		if err = d.startMeta(context.Background(), i); err == nil {
			fmt.Fprintln(w, "restarted")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

// stop closes dataservers first (they heartbeat to the metaservers), then
// metaservers. Everything is on disk, so a restart finds all data again.
func (d *devCluster) stop() {
	for _, s := range d.datas {
		s.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.metas {
		if s != nil {
			s.Close()
		}
	}
	if d.http != nil {
		d.http.Close()
	}
	d.audit.Close()
}
