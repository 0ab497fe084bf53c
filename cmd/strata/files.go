package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/strata-hpc/strata/client"
	"github.com/strata-hpc/strata/internal/pki"
	"github.com/strata-hpc/strata/proto/stratapb"
)

func init() {
	register(command{name: "put", summary: "copy a local file (or - for stdin) into Strata", run: runPut})
	register(command{name: "get", summary: "copy a file out of Strata (to a local path, or - for stdout)", run: runGet})
	register(command{name: "ls", summary: "list directories", run: runLs})
	register(command{name: "stat", summary: "show a file's attributes and layout", run: runStat})
	register(command{name: "mkdir", summary: "make directories", run: runMkdir})
	register(command{name: "rm", summary: "remove files and directories", run: runRm})
	register(command{name: "mv", summary: "rename or move a file or directory", run: runMv})
}

// clientFlags are the flags every command that talks to a cluster has.
type clientFlags struct {
	meta   *string
	tenant *string
	level  *string
	// tenantToken makes the command act as that tenant, confined to its
	// namespace; without one it acts as the cluster administrator.
	tenantToken *string
	tls         *tlsFlags
	role        pki.Role // the certificate presented: client, or bootctl for the boot controller
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	return &clientFlags{
		meta:   fs.String("meta", envDefault("meta", defaultMetaAddrs()), "metadata service addresses (or the service IP), comma-separated"),
		tenant: fs.String("tenant", envDefault("tenant", ""), "tenant (default: the default tenant)"),
		level:  fs.String("log-level", envDefault("log-level", "warn"), "debug, info, warn or error"),
		tenantToken: fs.String("tenant-token", envDefault("tenant-token", ""),
			"act as the tenant this token belongs to ($STRATA_TENANT_TOKEN; default: the cluster administrator)"),
		tls:  addTLSFlags(fs, true),
		role: pki.RoleClient,
	}
}

func (cf *clientFlags) open() (*client.Client, error) { return cf.openWith(nil) }

// openWith opens a client; set, when given, adjusts its config first.
func (cf *clientFlags) openWith(set func(*client.Config)) (*client.Client, error) {
	addrs := splitList(*cf.meta)
	if len(addrs) == 0 {
		return nil, usageErr("--meta is empty")
	}
	log, err := newLogger(os.Stderr, *cf.level)
	if err != nil {
		return nil, err
	}
	id, err := cf.tls.identity(cf.role, log)
	if err != nil {
		return nil, err
	}
	cfg := client.Config{MetaAddrs: addrs, Tenant: *cf.tenant, TenantToken: *cf.tenantToken, Logger: log, TLS: id}
	if set != nil {
		set(&cfg)
	}
	return client.New(cfg)
}

// parse parses flags and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, minArgs, maxArgs int, usage string) error {
	if err := fs.Parse(args); err != nil {
		return usageErr("%v", err)
	}
	if n := fs.NArg(); n < minArgs || (maxArgs >= 0 && n > maxArgs) {
		return usageErr("usage: strata %s", usage)
	}
	return nil
}

func runPut(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("put", stderr)
	cf := addClientFlags(fs)
	mode := fs.Uint("mode", 0o644, "permission bits of a new file")
	k := fs.Uint("k", 0, "data shards (default: the directory's policy)")
	m := fs.Uint("m", 0, "parity shards (with -k)")
	if err := parse(fs, args, 2, 2, "put [flags] LOCAL|- /REMOTE"); err != nil {
		return err
	}
	if *mode > 0o7777 {
		return usageErr("--mode %o: not a permission mode", *mode)
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	var in io.Reader = os.Stdin
	if src != "-" {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return usageErr("%s is a directory", src)
		}
		in = f
	}
	opts := client.PutOptions{Mode: uint32(*mode)}
	if *k > 0 {
		opts.Policy = &stratapb.StripePolicy{DataShards: uint32(*k), ParityShards: uint32(*m), ChunkSize: 4 << 20, SmallThreshold: 128 << 10}
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return putAtomic(ctx, c, dst, in, opts)
}

// putAtomic stores into a hidden temporary name beside dst and renames it
// over dst once every byte is committed (as rsync and getToFile do): an
// interrupted put (a killed process, a lost network) never leaves a
// partial file under dst, and an older dst stays whole until the rename.
// A killed put leaves only its ".strata-put-*" file, which `strata rm`
// removes; a failed one removes it itself.
func putAtomic(ctx context.Context, c *client.Client, dst string, in io.Reader, opts client.PutOptions) error {
	dir, name := path.Split(dst)
	if name == "" || name == "." || name == ".." {
		return usageErr("%s: not a file name", dst)
	}
	tmp := fmt.Sprintf("%s.strata-put-%s-%d", dir, name, rand.Uint64())
	if len(tmp)-len(dir) > 255 {
		tmp = fmt.Sprintf("%s.strata-put-%d", dir, rand.Uint64())
	}
	// On failure the temporary file goes, best effort, on a context of its
	// own: ctx may be what failed.
	cleanup := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = c.Remove(rctx, tmp)
	}
	if _, err := c.Put(ctx, tmp, in, opts); err != nil {
		cleanup()
		return err
	}
	if err := c.Rename(ctx, tmp, dst); err != nil {
		cleanup()
		return fmt.Errorf("put %s: %w", dst, err)
	}
	return nil
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("get", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 2, 2, "get [flags] /REMOTE LOCAL|-"); err != nil {
		return err
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	if dst == "-" {
		_, err := c.Get(ctx, src, stdout)
		return err
	}
	return getToFile(ctx, c, src, dst)
}

// getToFile writes into a temporary file beside dst and renames it into
// place, so an interrupted get never leaves a partial file under dst.
func getToFile(ctx context.Context, c *client.Client, src, dst string) error {
	if st, err := os.Stat(dst); err == nil && st.IsDir() {
		dst = filepath.Join(dst, path.Base(src))
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".strata-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := c.Get(ctx, src, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ls", stderr)
	cf := addClientFlags(fs)
	long := fs.Bool("l", false, "long listing")
	if err := parse(fs, args, 0, -1, "ls [-l] [PATH...]"); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{"/"}
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	tw := tabwriter.NewWriter(stdout, 2, 4, 1, ' ', 0)
	defer tw.Flush()
	for _, p := range paths {
		if err := lsOne(ctx, c, tw, p, *long, len(paths) > 1); err != nil {
			return err
		}
	}
	return nil
}

func lsOne(ctx context.Context, c *client.Client, w io.Writer, p string, long, header bool) error {
	st, err := c.Stat(ctx, p)
	if err != nil {
		return err
	}
	if st.Type != stratapb.FileType_DIRECTORY {
		printEntry(w, path.Base(p), st, long)
		return nil
	}
	entries, err := c.ReadDir(ctx, p)
	if err != nil {
		return err
	}
	if header {
		fmt.Fprintf(w, "%s:\n", p)
	}
	for _, e := range entries {
		printEntry(w, e.Name, e.Attr, long)
	}
	return nil
}

func printEntry(w io.Writer, name string, a *stratapb.Attr, long bool) {
	if !long || a == nil {
		fmt.Fprintln(w, name)
		return
	}
	if a.Type == stratapb.FileType_SYMLINK {
		name += " -> " + a.SymlinkTarget
	}
	fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", modeString(a), a.Nlink, a.Uid, a.Gid, a.Size,
		time.Unix(0, a.MtimeNs).Format("2006-01-02 15:04"), name)
}

func modeString(a *stratapb.Attr) string {
	m := fs.FileMode(a.Mode & 0o777)
	switch a.Type {
	case stratapb.FileType_DIRECTORY:
		m |= fs.ModeDir
	case stratapb.FileType_SYMLINK:
		m |= fs.ModeSymlink
	}
	return m.String()
}

func runStat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("stat", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 1, -1, "stat PATH..."); err != nil {
		return err
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	for _, p := range fs.Args() {
		a, err := c.Lstat(ctx, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  File: %s\n  Type: %s  Inode: %d  Links: %d\n  Size: %d\n  Mode: %s (%04o)  Uid: %d  Gid: %d\n",
			p, strings.ToLower(a.Type.String()), a.Ino, a.Nlink, a.Size, modeString(a), a.Mode, a.Uid, a.Gid)
		fmt.Fprintf(stdout, "Modify: %s\nChange: %s\n", time.Unix(0, a.MtimeNs).Format(time.RFC3339Nano), time.Unix(0, a.CtimeNs).Format(time.RFC3339Nano))
		if pol := a.Policy; pol != nil && a.Type != stratapb.FileType_SYMLINK {
			fmt.Fprintf(stdout, "Layout: %d+%d erasure coded, %s chunks, replicated below %s\n",
				pol.DataShards, pol.ParityShards, humanBytes(uint64(pol.ChunkSize)), humanBytes(uint64(pol.SmallThreshold)))
		}
	}
	return nil
}

func runMkdir(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mkdir", stderr)
	cf := addClientFlags(fs)
	parents := fs.Bool("p", false, "make parent directories as needed; no error if it exists")
	mode := fs.Uint("mode", 0o755, "permission bits")
	if err := parse(fs, args, 1, -1, "mkdir [-p] PATH..."); err != nil {
		return err
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	for _, p := range fs.Args() {
		if *parents {
			err = c.MkdirAll(ctx, p, uint32(*mode))
		} else {
			_, err = c.Mkdir(ctx, p, uint32(*mode))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func runRm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rm", stderr)
	cf := addClientFlags(fs)
	recursive := fs.Bool("r", false, "remove directories and their contents")
	if err := parse(fs, args, 1, -1, "rm [-r] PATH..."); err != nil {
		return err
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []error
	for _, p := range fs.Args() {
		if *recursive {
			err = c.RemoveAll(ctx, p)
		} else {
			err = c.Remove(ctx, p)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func runMv(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("mv", stderr)
	cf := addClientFlags(fs)
	if err := parse(fs, args, 2, 2, "mv OLD NEW"); err != nil {
		return err
	}
	c, err := cf.open()
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Rename(ctx, fs.Arg(0), fs.Arg(1))
}
