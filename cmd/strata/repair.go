package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/proto/stratapb"
)

func init() {
	register(command{name: "repair", summary: "self-healing: repair status [--watch], repair set --concurrency N --rate MB/s [--pause|--resume]", run: runRepair})
}

func runRepair(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	verb, rest := subcommand(args, "status", "set")
	switch verb {
	case "status":
		return runRepairStatus(ctx, rest, stdout, stderr)
	case "set":
		return runRepairSet(ctx, rest, stdout, stderr)
	}
	return usageErr("usage: strata repair status [--watch] | strata repair set [--concurrency N] [--rate MB/s] [--pause|--resume] [--margin F]")
}

func runRepairStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("repair status", stderr)
	cf := addClientFlags(fs)
	watch := fs.Bool("watch", false, "refresh every --interval until interrupted")
	every := fs.Duration("interval", time.Second, "refresh interval with --watch")
	if err := parse(fs, args, 0, 0, "repair status [--watch]"); err != nil {
		return err
	}
	if *every <= 0 {
		return usageErr("--interval must be positive")
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		st, err := c.RepairStatus(ctx)
		if err != nil {
			return fmt.Errorf("repair status: %w", err)
		}
		printRepair(stdout, st)
		if !*watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*every):
		}
		fmt.Fprintln(stdout)
	}
}

func runRepairSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("repair set", stderr)
	cf := addClientFlags(fs)
	conc := fs.Int("concurrency", 0, "shard rebuilds in flight at once (1..256)")
	rate := fs.Float64("rate", 0, "repair bandwidth in MB/s of rebuilt shards (> 0)")
	margin := fs.Float64("margin", 0, "rebalance until placed bytes are within this fraction of the mean (0..1)")
	pause := fs.Bool("pause", false, "start no new repair, drain or rebalance")
	resume := fs.Bool("resume", false, "undo --pause")
	if err := parse(fs, args, 0, 0, "repair set [--concurrency N] [--rate MB/s] [--margin F] [--pause|--resume]"); err != nil {
		return err
	}
	var s client.RepairSettings
	var bad error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "concurrency":
			if *conc < 1 || *conc > 256 {
				bad = usageErr("--concurrency %d: want 1..256", *conc)
			}
			v := uint32(*conc)
			s.Concurrency = &v
		case "rate":
			if !(*rate > 0) || math.IsInf(*rate, 0) {
				bad = usageErr("--rate %g: the repair rate must be a positive number of MB/s", *rate)
			}
			v := int64(*rate * 1e6)
			s.RateBytes = &v
		case "margin":
			if !(*margin > 0 && *margin < 1) {
				bad = usageErr("--margin %g: want a fraction between 0 and 1", *margin)
			}
			s.BalanceMargin = margin
		}
	})
	if bad != nil {
		return bad
	}
	if *pause && *resume {
		return usageErr("--pause and --resume together")
	}
	if *pause || *resume {
		p := *pause
		s.Paused = &p
	}
	if s == (client.RepairSettings{}) {
		return usageErr("nothing to set: give --concurrency, --rate, --margin, --pause or --resume")
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	cfg, err := c.SetRepairConfig(ctx, s)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "repair: concurrency %d, rate %.1f MB/s, margin %.0f%%, %s\n", cfg.Concurrency,
		float64(cfg.RateBytesPerSec)/1e6, cfg.BalanceMargin*100, pausedWord(cfg.Paused))
	return nil
}

func pausedWord(p bool) string {
	if p {
		return "paused"
	}
	return "running"
}

// printRepair prints stripe health, the queue with a progress bar, rate
// and ETA, and drains in progress.
func printRepair(w io.Writer, st *stratapb.RepairStatusResponse) {
	total := st.HealthyStripes + st.DegradedStripes + st.LostStripes
	fmt.Fprintf(w, "stripes: %d healthy, %d degraded, %d lost (of %d)\n", st.HealthyStripes, st.DegradedStripes, st.LostStripes, total)
	fmt.Fprintf(w, "queue:   %d shards (%s), %d in flight, %d rebalance moves\n", st.QueueShards, humanBytes(st.QueueBytes), st.InFlight, st.RebalanceShards)
	done := st.RepairedBytes
	fmt.Fprintf(w, "repair:  %s %s\n", progressBar(done, done+st.QueueBytes, 30), etaText(st))
	fmt.Fprintf(w, "rate:    %.1f MB/s (limit %.1f MB/s, concurrency %d, %s)\n", st.RateBytesPerSec/1e6,
		float64(st.Config.GetRateBytesPerSec())/1e6, st.Config.GetConcurrency(), pausedWord(st.Config.GetPaused()))
	if st.ActiveConcurrency > 0 && st.ActiveConcurrency < st.Config.GetConcurrency() {
		fmt.Fprintf(w, "yielding to clients: %s/s of client I/O, %d of %d rebuilds at once\n",
			humanBytes(st.ClientBytesPerSec), st.ActiveConcurrency, st.Config.GetConcurrency())
	}
	fmt.Fprintf(w, "done:    %d shards (%s) rebuilt by this leader; audit: %d orphans deleted, %d missing found\n",
		st.RepairedShards, humanBytes(st.RepairedBytes), st.OrphansDeleted, st.MissingFound)
	if len(st.LostServers) > 0 {
		fmt.Fprintf(w, "lost dataservers: %v\n", st.LostServers)
	}
	for _, d := range st.Drains {
		fmt.Fprintf(w, "draining dataserver %d: %d shards (%s) left to move, %d shard files on its disks\n",
			d.ServerId, d.RemainingShards, humanBytes(d.RemainingBytes), d.StoredShards)
	}
}

func etaText(st *stratapb.RepairStatusResponse) string {
	switch {
	case st.QueueShards == 0:
		return "idle"
	case st.EtaSeconds < 0:
		return "ETA unknown"
	}
	return "ETA " + (time.Duration(st.EtaSeconds * float64(time.Second))).Round(time.Second).String()
}

// progressBar draws done/total as [#####.....] 50%.
func progressBar(done, total uint64, width int) string {
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100)
}
