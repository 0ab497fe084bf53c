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
	register(command{name: "df", summary: "space: logical bytes against bytes stored (after erasure coding and dedup)", run: runDf})
}

func runDf(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("df", stderr)
	cf := addClientFlags(fs)
	total := fs.Bool("total", false, "only the whole file system, not each top-level directory")
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
	u, err := c.Usage(ctx, !*total)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PATH\tINODES\tLOGICAL\tSTORED\tRATIO\tSHARED OUTSIDE\tCHUNKS\tEXTRA REFS\t")
	for _, d := range u.Dirs {
		printDfRow(tw, "/"+d.Name, d)
	}
	printDfRow(tw, "total", u.Total)
	return tw.Flush()
}

// printDfRow writes one row: RATIO is stored/logical (above 1: erasure
// coding overhead; below: sharing and dedup); SHARED OUTSIDE is the part of
// STORED also held outside the row's tree (removing the tree would not
// free it); EXTRA REFS counts chunk references beyond the first of each
// chunk inside the tree.
func printDfRow(w io.Writer, name string, u *stratapb.Usage) {
	ratio := "-"
	if u.LogicalBytes > 0 {
		ratio = fmt.Sprintf("%.2f", float64(u.StoredBytes)/float64(u.LogicalBytes))
	}
	fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t\n", name, u.Inodes, humanBytes(u.LogicalBytes),
		humanBytes(u.StoredBytes), ratio, humanBytes(u.SharedBytes), u.Chunks, u.ChunkRefs-u.Chunks)
}
