package bootctl

import (
	"context"
	"errors"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/strata-hpc/strata/internal/audit"
)

// Audit sends the boot controller's security-relevant actions (power
// actions, group switches and rollbacks, inventory changes, refused BMC
// credentials) to the audit log. The zero value records nothing.
// Records carry names, addresses and outcomes, never a BMC password.
type Audit struct {
	Log   *audit.Log
	Actor string // who acts: "user@host" for the CLI, the controller id for the daemon
}

// DefaultActor names the person or daemon running this process.
func DefaultActor() string {
	name := "uid-" + strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// outcome maps an action's error to the audit outcome.
func outcome(err error) string {
	switch {
	case err == nil:
		return audit.Allowed
	case errors.Is(err, ErrBMCAuth):
		return audit.Denied
	default:
		return audit.Failed
	}
}

// record writes one record; err (if any) becomes the outcome and an
// "error" attribute.
func (a Audit) record(ctx context.Context, action, object string, err error, attrs ...any) {
	if a.Log == nil {
		return
	}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	actor := a.Actor
	if actor == "" {
		actor = "unknown"
	}
	a.Log.Record(ctx, action, actor, object, outcome(err), attrs...)
}

// power records one node's power action and, when its BMC refused the
// credentials, a failed authentication against that BMC.
func (a Audit) power(ctx context.Context, n Node, r PowerResult) {
	a.record(ctx, "power."+string(r.Action), "node/"+n.Name, r.Err, "bmc", n.BMC.Addr, "state", string(r.State), "attempts", r.Attempts)
	if errors.Is(r.Err, ErrBMCAuth) {
		a.record(ctx, "bmc.auth", "bmc/"+n.BMC.Addr, r.Err, "node", n.Name, "bmc_user", n.BMC.User)
	}
}

// node records an inventory change of n (never its BMC password).
func (a Audit) node(ctx context.Context, action string, n Node, err error) {
	a.record(ctx, action, "node/"+n.Name, err, "macs", strings.Join(n.MACs, ","), "bmc", n.BMC.Addr, "group", n.Group, "role", string(n.Role))
}

// group records a switch or rollback of g to cfg.
func (a Audit) group(ctx context.Context, action, group string, cfg GroupConfig, nodes []NodeSwitch, err error) {
	failed := 0
	for _, r := range nodes {
		if r.Error != "" {
			failed++
		}
	}
	a.record(ctx, action, "group/"+group, err, "image", cfg.Image, "overlay", cfg.Overlay, "generation", cfg.Generation,
		"nodes", len(nodes), "nodes_failed", failed)
}
