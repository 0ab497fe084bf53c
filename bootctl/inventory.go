// Package bootctl is Strata's boot controller: the inventory of cluster
// nodes and groups (kept in the metadata service), power over IPMI, the
// iPXE boot-configuration server, the one-step group switch, power saving,
// the metadata watchdog, and the boot agent that runs on each node.
//
// It talks to the cluster only through the client package.
package bootctl

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// Role is what a node is for.
type Role string

// Roles of a node.
const (
	RoleCompute  Role = "compute"
	RoleMetadata Role = "metadata"
	RoleSpare    Role = "spare"
)

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleCompute, RoleMetadata, RoleSpare:
		return r, nil
	}
	return "", fmt.Errorf("bootctl: role %q: want compute, metadata or spare", s)
}

// BMC is how to reach a node's baseboard management controller.
type BMC struct {
	Addr string `json:"addr"` // host:port (port 623 by default)
	User string `json:"user"`
	// Password is the plain password, in memory only: it is never encoded
	// (json:"-"), stored, logged or printed. The inventory holds Sealed.
	Password string `json:"-"`
	// Sealed is the password encrypted with the boot controller's key
	// (secret.go); Plain is one stored unencrypted by an older version,
	// still read, and sealed by `strata bootctl rekey`.
	Sealed string `json:"password_sealed,omitempty"`
	Plain  string `json:"password,omitempty"`
	keyErr error  // the key given did not open Sealed (see unseal)
	// CipherSuite is the RMCP+ cipher suite id; 0 means 3 (what ipmi_sim
	// and most BMCs answer fastest to).
	CipherSuite int `json:"cipher_suite,omitempty"`
}

// String never shows the password, so a BMC can be logged or printed.
func (b BMC) String() string {
	pw := "none"
	switch {
	case b.Sealed != "":
		pw = "encrypted"
	case b.Password != "" || b.Plain != "":
		pw = "set"
	}
	return fmt.Sprintf("%s user=%s password=(%s)", b.Addr, b.User, pw)
}

// LogValue redacts the password in slog output.
func (b BMC) LogValue() slog.Value { return slog.StringValue(b.String()) }

// Node is one machine of the cluster.
type Node struct {
	Name  string   `json:"name"`
	MACs  []string `json:"macs"` // normalised (NormalizeMAC)
	BMC   BMC      `json:"bmc"`
	Group string   `json:"group,omitempty"` // one group at most, by construction
	Role  Role     `json:"role"`
	// MetaID, MetaRaft and MetaGRPC describe the metaserver a metadata or
	// spare node runs when powered on (used by the watchdog).
	MetaID   string `json:"meta_id,omitempty"`
	MetaRaft string `json:"meta_raft,omitempty"`
	MetaGRPC string `json:"meta_grpc,omitempty"`
}

// LogValue keeps BMC credentials out of logs.
func (n Node) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", n.Name), slog.String("group", n.Group), slog.String("bmc", n.BMC.Addr))
}

// GroupConfig is what a group's nodes boot.
type GroupConfig struct {
	Image      string `json:"image"`             // NAME:TAG
	Overlay    string `json:"overlay,omitempty"` // overlay name; "" = the node's name
	KernelArgs string `json:"kernel_args,omitempty"`
	// Kernel and Initrd are URLs; "" means the controller's defaults.
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	// Generation grows by one on every change, so that a check-in can be
	// matched to the configuration it booted.
	Generation uint64 `json:"generation"`
}

// Group is a set of nodes booting one configuration.
type Group struct {
	Name     string       `json:"name"`
	Config   GroupConfig  `json:"config"`
	Previous *GroupConfig `json:"previous,omitempty"` // for rollback
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckName validates a node or group name: it becomes a file name and a
// kernel argument, so it is kept to a safe alphabet.
func CheckName(kind, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("bootctl: %s name %q: want 1-63 of letters, digits, '.', '_', '-', starting with a letter or digit", kind, s)
	}
	return nil
}

var imageRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*:[A-Za-z0-9][A-Za-z0-9._-]*$`)

// CheckImageRef validates NAME:TAG.
func CheckImageRef(s string) error {
	if !imageRE.MatchString(s) {
		return fmt.Errorf("bootctl: image %q: want NAME:TAG", s)
	}
	return nil
}

// CheckKernelArgs refuses arguments that would break the iPXE script or
// override the strata.* arguments the controller sets itself.
func CheckKernelArgs(s string) error {
	if strings.ContainsAny(s, "\n\r\x00") {
		return errors.New("bootctl: kernel arguments must be one line")
	}
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "strata.") {
			return fmt.Errorf("bootctl: kernel argument %q: strata.* arguments are set by the boot controller", f)
		}
	}
	return nil
}

// CheckBMCAddr validates host:port, defaulting the port to 623.
func CheckBMCAddr(s string) (string, error) {
	if s == "" {
		return "", errors.New("bootctl: BMC address is empty")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, "623"
	}
	p, perr := strconv.Atoi(port)
	if host == "" || perr != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("bootctl: BMC address %q: want HOST[:PORT]", s)
	}
	return net.JoinHostPort(host, port), nil
}

// Validate checks a node before it is stored, normalising its MACs and BMC
// address in place.
func (n *Node) Validate() error {
	if err := CheckName("node", n.Name); err != nil {
		return err
	}
	if len(n.MACs) == 0 {
		return fmt.Errorf("bootctl: node %s: at least one MAC address is required", n.Name)
	}
	seen := map[string]bool{}
	for i, m := range n.MACs {
		norm, err := NormalizeMAC(m)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if seen[norm] {
			return fmt.Errorf("bootctl: node %s: MAC %s given twice", n.Name, norm)
		}
		seen[norm] = true
		n.MACs[i] = norm
	}
	if n.Role == "" {
		n.Role = RoleCompute
	}
	if _, err := ParseRole(string(n.Role)); err != nil {
		return err
	}
	if n.Group != "" {
		if strings.Contains(n.Group, ",") {
			return fmt.Errorf("bootctl: node %s: a node belongs to one group at most (got %q)", n.Name, n.Group)
		}
		if err := CheckName("group", n.Group); err != nil {
			return err
		}
	}
	addr, err := CheckBMCAddr(n.BMC.Addr)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	n.BMC.Addr = addr
	return nil
}

// Validate checks a group configuration.
func (g *GroupConfig) Validate() error {
	if err := CheckImageRef(g.Image); err != nil {
		return err
	}
	if g.Overlay != "" {
		if err := CheckName("overlay", g.Overlay); err != nil {
			return err
		}
	}
	return CheckKernelArgs(g.KernelArgs)
}

// OverlayFor is the overlay a node of the group boots with: the group's
// overlay, with one sub-overlay per node, or the node's own name.
func (g *Group) OverlayFor(node string) string {
	if g.Config.Overlay == "" {
		return node
	}
	return g.Config.Overlay
}
