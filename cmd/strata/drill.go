package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/pki"
)

func init() {
	register(command{name: "drill", summary: "failure drills: drill meta-failover kills the metadata leader under load and reports", run: runDrill})
}

// drillOptions are the flags of `strata drill meta-failover`.
type drillOptions struct {
	meta, service     string
	rounds, workers   int
	settle, timeout   time.Duration
	devControl        string
	killCmd, startCmd string
	jsonOut           bool
	viaIPMI           bool   // power the leader's node off and on through its BMC (drill_ipmi.go)
	bmcKeyFile        string // the key of the stored BMC passwords (with viaIPMI)
}

// roundReport is one round of the drill: what an operator wants to know.
type roundReport struct {
	Round       int      `json:"round"`
	OldLeader   string   `json:"old_leader"`
	NewLeader   string   `json:"new_leader"`
	NewLeaderMs float64  `json:"new_leader_ms"`
	ServiceIPMs float64  `json:"service_ip_ms,omitempty"`
	StallP50Ms  float64  `json:"stall_p50_ms"`
	StallP99Ms  float64  `json:"stall_p99_ms"`
	StallMaxMs  float64  `json:"stall_max_ms"`
	Ops         int      `json:"ops"`
	Failed      int      `json:"failed"`
	Verified    int      `json:"verified"`
	Corrupt     int      `json:"corrupt"`
	RejoinMs    float64  `json:"rejoin_ms"`
	Errors      []string `json:"errors,omitempty"`
}

func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "history" { // hidden: a tool of the fault tests
		return runDrillHistory(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "meta-failover" {
		return usageErr("usage: strata drill meta-failover [flags]")
	}
	fs := newFlags("drill meta-failover", stderr)
	var o drillOptions
	fs.StringVar(&o.meta, "meta", envDefault("meta", defaultMetaAddrs()), "metaserver addresses (the servers' own, not only the service IP)")
	fs.StringVar(&o.service, "service-ip", fmt.Sprintf("%s:%d", devServiceIP, devBasePort), "service IP:port to time (\"\" to skip)")
	fs.IntVar(&o.rounds, "rounds", 3, "failovers to run")
	fs.IntVar(&o.workers, "workers", 4, "client workers writing and reading during the drill")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "how long the workload runs after the new leader is found")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "give up on a round after this long")
	fs.StringVar(&o.devControl, "dev-control", "", fmt.Sprintf("the dev cluster's control URL, used to kill and restart metaservers when no --kill-cmd is given (default https://127.0.0.1:%d, http with --insecure)", devBasePort+30))
	tf := addTLSFlags(fs, true)
	fs.StringVar(&o.killCmd, "kill-cmd", "", "shell command that kills metaserver {id} (at {grpc}); e.g. 'ssh {host} systemctl kill -s KILL strata-meta'")
	fs.StringVar(&o.startCmd, "restart-cmd", "", "shell command that starts metaserver {id} again")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as JSON")
	fs.StringVar(&o.bmcKeyFile, "bmc-key-file", envDefault("bmc-key-file", ""), "with --via-ipmi: key of the stored BMC passwords (default: the dev cluster's)")
	fs.BoolVar(&o.viaIPMI, "via-ipmi", false, "power the leader's node off (and on again) through its BMC, as found in the boot controller's inventory, instead of killing the process")
	if err := parse(fs, args[1:], 0, 0, "drill meta-failover [flags]"); err != nil {
		return err
	}
	if o.rounds < 1 || o.workers < 1 {
		return usageErr("--rounds and --workers must be at least 1")
	}
	if (o.killCmd == "") != (o.startCmd == "") {
		return usageErr("--kill-cmd and --restart-cmd go together")
	}
	if o.viaIPMI && o.killCmd != "" {
		return usageErr("--via-ipmi and --kill-cmd exclude each other")
	}
	d := &drill{o: o, log: slog.New(slog.DiscardHandler), http: http.DefaultClient}
	warn, _ := newLogger(stderr, "warn")
	id, err := tf.identity(pki.RoleClient, warn)
	if err != nil {
		return err
	}
	d.tls = id
	if id != nil {
		// The dev control endpoint presents the dev cluster's meta
		// certificate and wants one of ours.
		d.http = &http.Client{Transport: &http.Transport{TLSClientConfig: id.ClientTLS()}}
	}
	if d.o.devControl == "" {
		scheme := "https"
		if id == nil {
			scheme = "http"
		}
		d.o.devControl = fmt.Sprintf("%s://127.0.0.1:%d", scheme, devBasePort+30)
	}
	var reports []roundReport
	for r := 1; r <= o.rounds && ctx.Err() == nil; r++ {
		rep, err := d.round(ctx, r)
		if err != nil {
			rep.Errors = append(rep.Errors, err.Error())
		}
		reports = append(reports, rep)
		if !o.jsonOut {
			fmt.Fprintf(stderr, "round %d: %s -> %s in %.0f ms\n", r, rep.OldLeader, rep.NewLeader, rep.NewLeaderMs)
		}
	}
	printDrill(stdout, reports, o.jsonOut)
	for _, r := range reports {
		if r.Failed > 0 || r.Corrupt > 0 || len(r.Errors) > 0 {
			return errors.New("drill found failures (see the report)")
		}
	}
	return nil
}

type drill struct {
	o    drillOptions
	log  *slog.Logger
	tls  *pki.Identity // nil with --insecure
	http *http.Client  // for the dev control URL
}

func (d *drill) client(addrs []string, stale bool) (*client.Client, error) {
	return client.New(client.Config{MetaAddrs: addrs, Logger: d.log, StaleReads: stale, TLS: d.tls})
}

// round runs one failover: workload on, leader killed, new leader and
// service IP timed, workload off, data verified, old leader restarted and
// timed until it has caught up.
func (d *drill) round(ctx context.Context, n int) (roundReport, error) {
	rep := roundReport{Round: n}
	ctx, cancel := context.WithTimeout(ctx, d.o.timeout)
	defer cancel()
	c, err := d.client(splitList(d.o.meta), false)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return rep, fmt.Errorf("status: %w", err)
	}
	rep.OldLeader = st.LeaderId
	oldAddr := st.LeaderAddr
	// The survivors: every address we know (given, or recorded by the
	// members themselves, which a fresh follower may not have done yet)
	// but the old leader's.
	seen := map[string]bool{oldAddr: true, "": true}
	var others []string
	for _, m := range st.Members {
		if !seen[m.GrpcAddr] {
			seen[m.GrpcAddr] = true
			others = append(others, m.GrpcAddr)
		}
	}
	for _, a := range splitList(d.o.meta) {
		if !seen[a] && a != d.o.service {
			seen[a] = true
			others = append(others, a)
		}
	}
	if len(others) == 0 {
		return rep, errors.New("no metaserver besides the leader is known: give them all with --meta")
	}
	dir := fmt.Sprintf("/.drill/%d-round%d", time.Now().UnixNano(), n)
	if err := c.MkdirAll(ctx, dir, 0o755); err != nil {
		return rep, err
	}
	w := startWorkload(ctx, c, dir, d.o.workers)
	time.Sleep(500 * time.Millisecond) // steady state first
	killed := time.Now()
	if err := d.act(ctx, "kill", rep.OldLeader, oldAddr); err != nil {
		w.stop()
		return rep, err
	}
	rep.NewLeader, rep.NewLeaderMs = d.waitNewLeader(ctx, others, rep.OldLeader, killed)
	if d.o.service != "" {
		rep.ServiceIPMs = d.waitService(ctx, rep.OldLeader, killed)
	}
	time.Sleep(d.o.settle)
	w.stop()
	w.report(&rep)
	rep.Verified, rep.Corrupt = w.verify(ctx, c)
	restarted := time.Now()
	if err := d.act(ctx, "restart", rep.OldLeader, oldAddr); err != nil {
		return rep, err
	}
	rep.RejoinMs = d.waitCaughtUp(ctx, oldAddr, w.lastPath(), restarted)
	return rep, nil
}

// act kills or restarts metaserver id, by command template or through
// the dev cluster's control endpoint.
func (d *drill) act(ctx context.Context, what, id, grpcAddr string) error {
	if d.o.viaIPMI {
		return d.actIPMI(ctx, what, id)
	}
	tmpl := map[string]string{"kill": d.o.killCmd, "restart": d.o.startCmd}[what]
	if tmpl != "" {
		host, _, _ := strings.Cut(grpcAddr, ":")
		cmd := strings.NewReplacer("{id}", id, "{grpc}", grpcAddr, "{host}", host).Replace(tmpl)
		if out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", what, id, err, bytes.TrimSpace(out))
		}
		return nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/dev/meta/%s/%s", d.o.devControl, id, what), nil)
	resp, err := d.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s via %s (is this a strata dev cluster? else give --kill-cmd): %w", what, id, d.o.devControl, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %s: %s", what, id, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// waitNewLeader polls the surviving servers until one answers as leader.
func (d *drill) waitNewLeader(ctx context.Context, others []string, old string, since time.Time) (string, float64) {
	return pollStatus(ctx, d, others, since, func(leader string) bool { return leader != old })
}

// waitService polls the service IP alone until its holder is a new leader.
func (d *drill) waitService(ctx context.Context, old string, since time.Time) float64 {
	_, ms := pollStatus(ctx, d, []string{d.o.service}, since, func(leader string) bool { return leader != old })
	return ms
}

func pollStatus(ctx context.Context, d *drill, addrs []string, since time.Time, ok func(string) bool) (string, float64) {
	for ctx.Err() == nil {
		c, err := d.client(addrs, false)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			st, err := c.ClusterStatus(pctx)
			cancel()
			c.Close()
			if err == nil && ok(st.LeaderId) {
				return st.LeaderId, msSince(since)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "", -1
}

// waitCaughtUp asks the restarted server alone, with a stale read, for the
// last file the workload wrote: it answers once it has applied that entry.
func (d *drill) waitCaughtUp(ctx context.Context, addr, path string, since time.Time) float64 {
	for ctx.Err() == nil {
		c, err := d.client([]string{addr}, true)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err = c.Stat(pctx, path)
			cancel()
			c.Close()
			if err == nil {
				return msSince(since)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// workload writes small files and reads each back at once, recording how
// long every operation took (a stall shows as a long one) and what it
// wrote (verified after the drill).
type workload struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	lat    []time.Duration
	failed int
	files  map[string][]byte
	last   string
}

func startWorkload(ctx context.Context, c *client.Client, dir string, workers int) *workload {
	ctx, cancel := context.WithCancel(ctx)
	w := &workload{cancel: cancel, files: map[string][]byte{}}
	for i := 0; i < workers; i++ {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				w.one(ctx, c, fmt.Sprintf("%s/w%d-%d", dir, i, n))
			}
		}()
	}
	return w
}

func (w *workload) one(ctx context.Context, c *client.Client, path string) {
	data := make([]byte, 4096)
	rand.Read(data)
	start := time.Now()
	_, err := c.Put(ctx, path, bytes.NewReader(data), client.PutOptions{})
	var got bytes.Buffer
	if err == nil {
		_, err = c.Get(ctx, path, &got)
	}
	if ctx.Err() != nil {
		return // stopped mid-operation: neither a result nor a failure
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lat = append(w.lat, time.Since(start))
	if err != nil || !bytes.Equal(got.Bytes(), data) {
		w.failed++
		return
	}
	w.files[path], w.last = data, path
}

func (w *workload) stop() { w.cancel(); w.wg.Wait() }

func (w *workload) lastPath() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *workload) report(r *roundReport) {
	w.mu.Lock()
	defer w.mu.Unlock()
	lat := append([]time.Duration(nil), w.lat...)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.Ops, r.Failed = len(lat), w.failed
	if len(lat) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	r.StallP50Ms, r.StallP99Ms, r.StallMaxMs = pct(0.5), pct(0.99), pct(1)
}

// verify reads every file written during the round again.
func (w *workload) verify(ctx context.Context, c *client.Client) (ok, corrupt int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for p, want := range w.files {
		var got bytes.Buffer
		if _, err := c.Get(ctx, p, &got); err != nil || !bytes.Equal(got.Bytes(), want) {
			corrupt++
			continue
		}
		ok++
	}
	return ok, corrupt
}

func printDrill(w io.Writer, reports []roundReport, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"drill": "meta-failover", "rounds": reports})
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ROUND\tLEADER\tNEW LEADER ms\tSERVICE IP ms\tSTALL p50 ms\tp99 ms\tmax ms\tOPS\tFAILED\tVERIFIED\tREJOIN ms\t")
	for _, r := range reports {
		fmt.Fprintf(tw, "%d\t%s→%s\t%.0f\t%.0f\t%.1f\t%.0f\t%.0f\t%d\t%d\t%d\t%.0f\t\n", r.Round, r.OldLeader, r.NewLeader,
			r.NewLeaderMs, r.ServiceIPMs, r.StallP50Ms, r.StallP99Ms, r.StallMaxMs, r.Ops, r.Failed, r.Verified, r.RejoinMs)
	}
	tw.Flush()
	for _, r := range reports {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "round %d: %s\n", r.Round, e)
		}
	}
}
