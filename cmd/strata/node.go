package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
)

func init() {
	register(command{name: "node", summary: "cluster nodes: add, rm, list, show, set, power, wake, acquire", run: runNode})
}

func runNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"add": runNodeAdd, "rm": runNodeRm, "list": runNodeList, "show": runNodeShow,
		"set": runNodeSet, "power": runNodePower, "wake": runNodeWake,
		"acquire": runNodeAcquire,
	}
	if len(args) == 0 || sub[args[0]] == nil {
		return usageErr("usage: strata node add|rm|list|show|set|power|wake|acquire ...")
	}
	return sub[args[0]](ctx, args[1:], stdout, stderr)
}

// openInventory opens a client and the inventory it holds.
func openInventory(ctx context.Context, cf *clientFlags) (*bootctl.Store, *client.Client, error) {
	c, err := cf.open()
	if err != nil {
		return nil, nil, err
	}
	st := bootctl.NewStore(c, nil)
	if err := st.Init(ctx); err != nil {
		c.Close()
		return nil, nil, err
	}
	st.Audit = openAudit(defaultAuditLog(), bootctl.DefaultActor())
	return st, c, nil
}

// nodeFlags are the settable fields of a node (add and set).
type nodeFlags struct {
	macs, bmc, user, pass, passFile, group, role *string
	keyFile                                      *string
	cipher                                       *int
	metaID, metaRaft, metaGRPC                   *string
}

func addNodeFlags(fs *flag.FlagSet) *nodeFlags {
	return &nodeFlags{
		macs:     fs.String("mac", "", "MAC addresses, comma-separated, any common notation"),
		bmc:      fs.String("bmc", "", "BMC address HOST[:PORT] (port 623 by default)"),
		user:     fs.String("bmc-user", "admin", "BMC user"),
		pass:     fs.String("bmc-password", envDefault("bmc-password", ""), "BMC password (prefer --bmc-password-file or STRATA_BMC_PASSWORD: flags show in ps)"),
		passFile: fs.String("bmc-password-file", "", "file holding the BMC password"),
		group:    fs.String("group", "", "the node's group (one)"),
		role:     fs.String("role", "compute", "compute, metadata or spare"),
		cipher:   fs.Int("cipher-suite", 0, "IPMI lanplus cipher suite (default 3)"),
		metaID:   fs.String("meta-id", "", "raft id of the metaserver this node runs (metadata and spare nodes)"),
		metaRaft: fs.String("meta-raft", "", "raft address of that metaserver"),
		metaGRPC: fs.String("meta-grpc", "", "gRPC address of that metaserver"),
		keyFile:  addKeyFlag(fs),
	}
}

// apply copies the flags that were set (all, for add) into n.
func (nf *nodeFlags) apply(fs *flag.FlagSet, n *bootctl.Node, all bool) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if all || set["mac"] {
		n.MACs = splitList(*nf.macs)
	}
	str := map[string]*string{"bmc": &n.BMC.Addr, "bmc-user": &n.BMC.User, "group": &n.Group,
		"meta-id": &n.MetaID, "meta-raft": &n.MetaRaft, "meta-grpc": &n.MetaGRPC}
	vals := map[string]*string{"bmc": nf.bmc, "bmc-user": nf.user, "group": nf.group,
		"meta-id": nf.metaID, "meta-raft": nf.metaRaft, "meta-grpc": nf.metaGRPC}
	for name, dst := range str {
		if all || set[name] {
			*dst = *vals[name]
		}
	}
	if all || set["role"] {
		n.Role = bootctl.Role(*nf.role)
	}
	if all || set["cipher-suite"] {
		n.BMC.CipherSuite = *nf.cipher
	}
	switch {
	case *nf.passFile != "":
		b, err := os.ReadFile(*nf.passFile)
		if err != nil {
			return fmt.Errorf("--bmc-password-file: %w", err)
		}
		n.BMC.Password = strings.TrimRight(string(b), "\r\n")
	case all || set["bmc-password"]:
		n.BMC.Password = *nf.pass
	}
	return nil
}

func runNodeAdd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node add", stderr)
	cf := addClientFlags(fs)
	nf := addNodeFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "node add NAME --mac MAC[,MAC] --bmc HOST[:PORT] [--bmc-user U] [--bmc-password-file F] [--group G] [--role R]")
	if err != nil {
		return err
	}
	n := bootctl.Node{Name: pos[0]}
	if err := nf.apply(fs, &n, true); err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := withKey(st, *nf.keyFile); err != nil {
		return err
	}
	if err := st.AddNode(ctx, n); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s added\n", n.Name)
	return nil
}

func runNodeSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node set", stderr)
	cf := addClientFlags(fs)
	nf := addNodeFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "node set NAME [--mac ...] [--bmc ...] [--group G] [--role R] ...")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := withKey(st, *nf.keyFile); err != nil {
		return err
	}
	n, err := st.UpdateNode(ctx, pos[0], func(n *bootctl.Node) error { return nf.apply(fs, n, false) })
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "node %s updated\n", n.Name)
	return nil
}

func runNodeRm(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node rm", stderr)
	cf := addClientFlags(fs)
	pos, err := parseBoot(fs, args, 1, -1, "node rm NAME...")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []error
	for _, name := range pos {
		if err := st.RemoveNode(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(stdout, "node %s removed\n", name)
	}
	return errors.Join(errs...)
}

// nodeView is a node as list and show print it: never the password.
type nodeView struct {
	Name    string           `json:"name"`
	MACs    []string         `json:"macs"`
	BMC     string           `json:"bmc"`
	User    string           `json:"bmc_user"`
	Group   string           `json:"group,omitempty"`
	Role    bootctl.Role     `json:"role"`
	MetaID  string           `json:"meta_id,omitempty"`
	CheckIn *bootctl.CheckIn `json:"checkin,omitempty"`
}

func viewOf(ctx context.Context, st *bootctl.Store, n bootctl.Node) nodeView {
	v := nodeView{Name: n.Name, MACs: n.MACs, BMC: n.BMC.Addr, User: n.BMC.User, Group: n.Group, Role: n.Role, MetaID: n.MetaID}
	if ci, err := st.GetCheckIn(ctx, n.Name); err == nil {
		v.CheckIn = &ci
	}
	return v
}

func runNodeList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node list", stderr)
	cf := addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	_, err := parseBoot(fs, args, 0, 0, "node list [--json]")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return err
	}
	views := make([]nodeView, 0, len(nodes))
	for _, n := range nodes {
		views = append(views, viewOf(ctx, st, n))
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(views)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMACS\tBMC\tGROUP\tROLE\tBOOTED\tCHECKED IN")
	for _, v := range views {
		booted, at := "-", "never"
		if v.CheckIn != nil {
			booted = fmt.Sprintf("%s (gen %d)", v.CheckIn.Image, v.CheckIn.Generation)
			if v.CheckIn.Error != "" {
				booted = "FAILED: " + v.CheckIn.Error
			}
			at = time.Since(v.CheckIn.At).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, strings.Join(v.MACs, ","), v.BMC, orDash(v.Group), v.Role, booted, at)
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runNodeShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("node show", stderr)
	cf := addClientFlags(fs)
	pos, err := parseBoot(fs, args, 1, 1, "node show NAME")
	if err != nil {
		return err
	}
	st, c, err := openInventory(ctx, cf)
	if err != nil {
		return err
	}
	defer c.Close()
	n, err := st.GetNode(ctx, pos[0])
	if err != nil {
		return err
	}
	v := viewOf(ctx, st, n)
	fmt.Fprintf(stdout, "node:     %s\nrole:     %s\ngroup:    %s\nmacs:     %s\nbmc:      %s\n", v.Name, v.Role, orDash(v.Group), strings.Join(v.MACs, ", "), n.BMC)
	if n.MetaID != "" {
		fmt.Fprintf(stdout, "meta:     %s raft %s grpc %s\n", n.MetaID, n.MetaRaft, n.MetaGRPC)
	}
	if ci := v.CheckIn; ci != nil {
		fmt.Fprintf(stdout, "booted:   %s overlay %s (generation %d) at %s\nchecked:  %s\n", ci.Image, ci.Overlay, ci.Generation, ci.BootTime.Format(time.RFC3339), ci.At.Format(time.RFC3339))
		if ci.Error != "" {
			fmt.Fprintf(stdout, "error:    %s\n", ci.Error)
		}
	} else {
		fmt.Fprintln(stdout, "booted:   never checked in")
	}
	if ci := v.CheckIn; ci != nil && ci.MountRequests > 0 {
		fmt.Fprintf(stdout, "mount:    %d requests, last at %s\n", ci.MountRequests, ci.MountActiveAt.Format(time.RFC3339))
	}
	if req, err := st.GetRequest(ctx, n.Name); err == nil {
		fmt.Fprintf(stdout, "request:  by %s at %s\n", orDash(req.By), req.At.Format(time.RFC3339))
	}
	return nil
}
