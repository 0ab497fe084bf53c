package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/pki"
)

func init() {
	register(command{name: "bootctl", summary: "run the boot controller daemon (iPXE, check-ins, metadata watchdog, power saving); bootctl status|keygen|rekey", run: runBootctl})
}

func runBootctl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
			"status": runBootctlStatus, "keygen": runBootctlKeygen, "rekey": runBootctlRekey,
		}[args[0]]; sub != nil {
			return sub(ctx, args[1:], stdout, stderr)
		}
	}
	fs := newFlags("bootctl", stderr)
	cf := addClientFlags(fs)
	cf.role = pki.RoleBootctl
	listen := fs.String("listen", "127.0.0.1:7480", "HTTP(S) address for iPXE scripts and check-ins")
	url := fs.String("url", "", "this controller's URL as nodes reach it (default https://LISTEN, http:// with --insecure)")
	serviceMeta := fs.String("service-meta", envDefault("service-meta", fmt.Sprintf("%s:%d", devServiceIP, devBasePort)), "metadata address given to nodes as strata.meta (the service IP)")
	kernel := fs.String("kernel", "", "default kernel URL")
	initrd := fs.String("initrd", "", "default initrd URL")
	host, _ := os.Hostname()
	id := fs.String("id", fmt.Sprintf("%s-%d", host, os.Getpid()), "this controller's id (for the lease)")
	leaseTTL := fs.Duration("lease-ttl", 6*time.Second, "leader lease: a standby takes over after this long without renewal")
	watchdog := fs.Bool("watchdog", true, "watch the metadata voters (on the active controller)")
	var wc bootctl.WatchdogConfig
	fs.DurationVar(&wc.ProbeEvery, "probe-every", time.Second, "how often each voter is probed")
	fs.DurationVar(&wc.ProbeTimeout, "probe-timeout", 500*time.Millisecond, "deadline of one probe")
	fs.IntVar(&wc.FailAfter, "fail-after", 2, "failed probes in a row that mean a voter is dead")
	fs.DurationVar(&wc.RejoinTimeout, "rejoin-timeout", 60*time.Second, "how long a power-cycled voter has to come back before a spare replaces it")
	idleAfter := fs.Duration("idle-after", 0, "power off compute nodes idle this long (0: never)")
	auditPath := fs.String("audit-log", defaultAuditLog(), "audit log of power actions and inventory changes (JSON lines, 0600)")
	hl := bootctl.DefaultHTTPLimits()
	fs.Float64Var(&hl.Rate.Rate, "http-rate", hl.Rate.Rate, "HTTP requests per second per client (0: no limit); over it, 429")
	fs.IntVar(&hl.Rate.Burst, "http-burst", hl.Rate.Burst, "HTTP request burst per client")
	pf := addPowerFlags(fs)
	_, err := parseBoot(fs, args, 0, 0, "bootctl [flags] | bootctl status|keygen|rekey")
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *cf.level)
	if err != nil {
		return err
	}
	if wc.Power, err = pf.options(true); err != nil {
		return err
	}
	wc.Power.Audit = openAudit(*auditPath, "bootctl/"+*id)
	c, err := cf.openWith(func(cfg *client.Config) { cfg.Logger = log })
	if err != nil {
		return err
	}
	defer c.Close()
	tlsID, err := cf.tls.identity(pki.RoleBootctl, nil)
	if err != nil {
		return err
	}
	// One audit log for power actions, inventory changes and refused
	// HTTPS handshakes and calls.
	al := wc.Power.Audit.Log
	defer al.Close()
	st := bootctl.NewStore(c, log)
	if err := st.Init(ctx); err != nil {
		return err
	}
	if err := withKey(st, *pf.keyFile); err != nil {
		return err
	}
	if err := st.CheckKey(ctx); err != nil {
		return fmt.Errorf("bootctl: the BMC passwords of the inventory cannot be used: %w", err)
	}
	st.Audit = wc.Power.Audit
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	scheme := "http://"
	if tlsID != nil {
		// iPXE firmware has no certificate: client certificates are
		// optional at the handshake and required per path (tlsauth.go).
		lis, scheme = pki.NewListener(lis, tlsID.ServerTLSOptional(), al, log, "bootctl-http"), "https://"
	}
	if *url == "" {
		*url = scheme + lis.Addr().String()
	}
	srv := bootctl.NewServer(st, bootctl.ServerConfig{Meta: *serviceMeta, URL: *url, Kernel: *kernel, Initrd: *initrd, Logger: log, TLS: tlsID != nil, Audit: al})
	d := &bootDaemon{id: *id, st: st}
	srv.Status = d.status
	hs := &http.Server{Handler: bootctl.Limit(srv, hl, nil), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	pc := pf.controller()
	lease := &bootctl.Lease{Store: st, ID: *id, TTL: *leaseTTL, Log: log}
	go lease.Run(ctx, func(lctx context.Context) {
		d.setActive(true)
		defer d.setActive(false)
		if *watchdog {
			w := &bootctl.Watchdog{Store: st, Power: pc, Cfg: wc, Log: log, ID: *id, NewProbeClient: func(addr string) (*client.Client, error) {
				return client.New(client.Config{MetaAddrs: []string{addr}, StaleReads: true, Logger: slog.New(slog.DiscardHandler), TLS: tlsID})
			}}
			go w.Run(lctx)
		}
		idleLoop(lctx, bootctl.IdlePolicy{IdleAfter: *idleAfter, Store: st, Power: pc, Log: log})
	})
	log.Info("boot controller serving", "listen", lis.Addr().String(), "url", *url, "id", *id)
	fmt.Fprintf(stdout, "strata bootctl serving on %s (id %s)\n", lis.Addr(), *id)
	if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// idleLoop runs the power-saving sweep every few seconds until ctx ends.
func idleLoop(ctx context.Context, p bootctl.IdlePolicy) {
	for {
		if p.IdleAfter > 0 {
			if _, err := p.Sweep(ctx); err != nil && ctx.Err() == nil {
				p.Log.Warn("power saving sweep", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// bootDaemon is what /status reports about this controller.
type bootDaemon struct {
	id     string
	st     *bootctl.Store
	active atomic.Bool // holds the lease
}

func (d *bootDaemon) setActive(b bool) { d.active.Store(b) }

func (d *bootDaemon) status(ctx context.Context) any {
	holder, _ := d.st.LeaseHolder(ctx)
	evs, _ := d.st.Events(ctx)
	return map[string]any{"id": d.id, "active": d.active.Load(), "lease_holder": holder, "events": evs}
}

func runBootctlStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bootctl status", stderr)
	cf := addClientFlags(fs)
	n := fs.Int("events", 20, "how many recent watchdog events to show")
	_, err := parseBoot(fs, args, 0, 0, "bootctl status [--events N]")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	return printBootctlStatus(ctx, st, stdout, *n)
}

// printBootctlStatus shows the active controller, the recent watchdog
// events and the unregistered MACs; `strata status` shows it too.
func printBootctlStatus(ctx context.Context, st *bootctl.Store, w io.Writer, n int) error {
	holder, err := st.LeaseHolder(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "boot controller: active %s\n", orDash(holder))
	evs, err := st.Events(ctx)
	if err != nil {
		return err
	}
	if len(evs) > n {
		evs = evs[len(evs)-n:]
	}
	if len(evs) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tEVENT\tNODE\tVOTER\tDETAIL")
		for _, e := range evs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.At.Format("15:04:05.000"), e.Kind, orDash(e.Node), orDash(e.Member), e.Detail)
		}
		tw.Flush()
	}
	unknown, err := st.ListUnknownMACs(ctx)
	if err != nil {
		return err
	}
	for _, u := range unknown {
		fmt.Fprintf(w, "unregistered MAC %s asked to boot (%d times, last %s from %s): strata node add NAME --mac %s ...\n", u.MAC, u.Count, u.LastSeen.Format(time.RFC3339), u.Remote, u.MAC)
	}
	return nil
}

// parseBoot parses flags given before, between or after the positional
// arguments (`strata node add n1 --mac ...` reads naturally) and returns
// the positional ones.
func parseBoot(fs *flag.FlagSet, args []string, minArgs, maxArgs int, usage string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageErr("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		if i := len(args) - fs.NArg() - 1; i >= 0 && args[i] == "--" { // everything after -- is positional
			pos = append(pos, fs.Args()...)
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if n := len(pos); n < minArgs || (maxArgs >= 0 && n > maxArgs) {
		return nil, usageErr("usage: strata %s", usage)
	}
	return pos, nil
}

// printBootSection adds the boot controller's state (active controller,
// recent watchdog steps) to `strata status`, when the cluster has an
// inventory.
func printBootSection(ctx context.Context, c *client.Client, w io.Writer) {
	if _, err := c.Stat(ctx, bootctl.Root); err != nil {
		return
	}
	fmt.Fprintln(w)
	if err := printBootctlStatus(ctx, bootctl.NewStore(c, nil), w, 10); err != nil {
		fmt.Fprintf(w, "boot controller: %v\n", err)
	}
}
