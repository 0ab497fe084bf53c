package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func init() {
	register(command{name: "status", summary: "cluster health: leader, voters, dataservers", run: runStatus})
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return fmt.Errorf("cluster status: %w", err)
	}
	printStatus(stdout, st)
	rs, err := c.RepairStatus(ctx)
	if err != nil {
		return fmt.Errorf("repair status: %w", err)
	}
	fmt.Fprintln(stdout)
	printRepair(stdout, rs)
	printBootSection(ctx, c, stdout)
	return nil
}

func printStatus(w io.Writer, st *stratapb.ClusterStatusResponse) {
	fmt.Fprintf(w, "leader:  %s (%s), term %d, commit index %d\n", st.LeaderId, st.LeaderAddr, st.Term, st.CommitIndex)
	fmt.Fprintf(w, "files:   %d inodes, %d chunks, %s logical\n\n", st.Inodes, st.Chunks, humanBytes(st.LogicalBytes))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOTER\tRAFT\tGRPC\tROLE")
	for _, m := range st.Members {
		role := "follower"
		if m.Leader {
			role = "leader"
		}
		if !m.Voter {
			role += " (non-voter)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Id, m.RaftAddr, m.GrpcAddr, role)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATASERVER\tADDRESS\tSTATE\tCAPACITY\tFREE\tUSED BY SHARDS\tSHARDS\tHEARTBEAT")
	alive := 0
	for _, d := range st.Dataservers {
		state := "down"
		if d.Alive {
			state = "up"
			alive++
			if d.ReadOnly {
				state = "up (full)"
			}
		}
		switch {
		case d.Lost:
			state = "lost"
		case d.Draining:
			state += ", draining"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Id, d.Addr, state,
			humanBytes(d.CapacityBytes), humanBytes(d.FreeBytes), humanBytes(d.UsedBytes), d.ShardCount, humanAge(d.LastHeartbeatMsAgo))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d dataservers up\n", alive, len(st.Dataservers))
}
