package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/strata-hpc/strata/imagestore"
)

func init() {
	register(command{name: "image", summary: "import, list, show, tag and remove system images", run: runImage})
}

const imageUsage = `usage: strata image COMMAND [flags] ARGS
  import NAME:TAG TARBALL|DIR   import a root file system (tar, tar.gz, tar.zst or a directory)
  list                          list images
  show NAME:TAG                 an image's record, size, and what it shares with others
  tag NAME:TAG NEW:TAG          another name for an image (shares all its data)
  rm NAME:TAG...                remove images
  share --to TENANT NAME:TAG    give a tenant a read-only copy (administrator)`

func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageErr("%s", imageUsage)
	}
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"import": runImageImport, "list": runImageList, "ls": runImageList,
		"show": runImageShow, "tag": runImageTag, "rm": runImageRm,
		"share": runImageShare,
	}
	fn, ok := sub[args[0]]
	if !ok {
		return usageErr("unknown image command %q\n%s", args[0], imageUsage)
	}
	return fn(ctx, args[1:], stdout, stderr)
}

// openStore opens a client and the image store on it; close closes both.
func openStore(cf *clientFlags, stderr io.Writer) (*imagestore.Store, func(), error) {
	c, err := cf.open()
	if err != nil {
		return nil, nil, err
	}
	log, _ := newLogger(stderr, *cf.level)
	return imagestore.New(c, log), func() { c.Close() }, nil
}

// parseRefs parses image names, with the one rule imagestore.ParseRef has.
func parseRefs(names ...string) ([]imagestore.Ref, error) {
	out := make([]imagestore.Ref, len(names))
	for i, n := range names {
		r, err := imagestore.ParseRef(n)
		if err != nil {
			return nil, usageErr("%v", err)
		}
		out[i] = r
	}
	return out, nil
}

func runImageImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image import", stderr)
	cf := addClientFlags(fs)
	workers := fs.Int("workers", 0, "files written at once (default 32)")
	progress := fs.Bool("progress", isTerminal(stderr), "show a progress bar on stderr (default: when stderr is a terminal)")
	if err := parse(fs, args, 2, 2, "image import [flags] NAME:TAG TARBALL|DIR"); err != nil {
		return err
	}
	refs, err := parseRefs(fs.Arg(0))
	if err != nil {
		return err
	}
	src, err := imagestore.OpenSource(fs.Arg(1))
	if err != nil {
		return err
	}
	defer src.Close()
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	opts := imagestore.ImportOptions{Workers: *workers}
	if *progress {
		opts.Progress = stderr
	}
	res, err := s.Import(ctx, refs[0], src, opts)
	if err != nil {
		return err
	}
	if res.Resumed {
		fmt.Fprintf(stdout, "finished publishing %s (an earlier import had written all of it)\n", res.Ref)
		return nil
	}
	secs := max(res.Elapsed.Seconds(), 1e-3)
	if res.SameAs != "" {
		fmt.Fprintf(stdout, "imported %s: the same tarball (%s) as %s, whose tree it shares: %d entries, %s, nothing written, in %.1fs\n",
			res.Ref, res.Digest, res.SameAs, res.Entries, humanBytes(uint64(res.Bytes)), secs)
		return nil
	}
	fmt.Fprintf(stdout, "imported %s: %d entries, %s of data (%s new, the rest already stored) in %.1fs, %.0f MB/s\n",
		res.Ref, res.Entries, humanBytes(uint64(res.Bytes)), humanBytes(uint64(res.Stored)), secs, float64(res.Bytes)/secs/1e6)
	return nil
}

func runImageList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image list", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 0, 0, "image list [flags]"); err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	imgs, err := s.List(ctx)
	if err != nil {
		return err
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Ref.String() < imgs[j].Ref.String() })
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tENTRIES\tSIZE\tCREATED\tSTATE")
	for _, img := range imgs {
		state := "ready"
		if !img.Complete {
			state = "publishing (re-run the import to finish)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", img.Ref, img.Record.Entries, humanBytes(uint64(img.Record.Bytes)),
			img.Record.Created.Format("2006-01-02 15:04:05"), state)
	}
	return tw.Flush()
}

func runImageShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image show", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 1, 1, "image show [flags] NAME:TAG"); err != nil {
		return err
	}
	refs, err := parseRefs(fs.Arg(0))
	if err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	img, err := s.Get(ctx, refs[0])
	if err != nil {
		return err
	}
	u, err := s.Usage(ctx, refs[0])
	if err != nil {
		return err
	}
	pct := func(a, b uint64) float64 {
		if b == 0 {
			return 0
		}
		return 100 * float64(a) / float64(b)
	}
	fmt.Fprintf(stdout, "image:    %s\n", img.Ref)
	fmt.Fprintf(stdout, "source:   %s\n", img.Record.Source)
	fmt.Fprintf(stdout, "created:  %s\n", img.Record.Created.Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(stdout, "complete: %v\n", img.Complete)
	fmt.Fprintf(stdout, "files:    %d\n", u.Files)
	fmt.Fprintf(stdout, "size:     %s (%d bytes)\n", humanBytes(u.LogicalBytes), u.LogicalBytes)
	fmt.Fprintf(stdout, "stored:   %s on the dataservers, parity included\n", humanBytes(u.StoredBytes))
	fmt.Fprintf(stdout, "shared:   %s of the size (%.0f%%) is data that other images, overlays, snapshots or files also hold; %s stored\n",
		humanBytes(u.SharedLogicalBytes), pct(u.SharedLogicalBytes, u.LogicalBytes), humanBytes(u.SharedStoredBytes))
	fmt.Fprintf(stdout, "own:      %s stored that only this image holds (what rm would free)\n", humanBytes(u.StoredBytes-u.SharedStoredBytes))
	return nil
}

func runImageTag(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image tag", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 2, 2, "image tag [flags] NAME:TAG NEW-NAME:TAG"); err != nil {
		return err
	}
	refs, err := parseRefs(fs.Arg(0), fs.Arg(1))
	if err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := s.Tag(ctx, refs[0], refs[1]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tagged %s as %s\n", refs[0], refs[1])
	return nil
}

func runImageRm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("image rm", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 1, -1, "image rm [flags] NAME:TAG..."); err != nil {
		return err
	}
	refs, err := parseRefs(fs.Args()...)
	if err != nil {
		return err
	}
	s, closeStore, err := openStore(cf, stderr)
	if err != nil {
		return err
	}
	defer closeStore()
	for _, r := range refs {
		if err := s.Remove(ctx, r); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", r)
	}
	return nil
}

// isTerminal reports whether w is a terminal (for progress bars).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
