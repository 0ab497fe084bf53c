package bootctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	ipmi "github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Action is a power operation on one node.
type Action string

// Power actions. ActionPXE only sets the next boot device.
const (
	ActionStatus Action = "status"
	ActionOn     Action = "on"
	ActionOff    Action = "off"
	ActionCycle  Action = "cycle"
	ActionPXE    Action = "pxe"
)

// ParseAction checks an action name.
func ParseAction(s string) (Action, error) {
	switch a := Action(s); a {
	case ActionStatus, ActionOn, ActionOff, ActionCycle, ActionPXE:
		return a, nil
	}
	return "", fmt.Errorf("bootctl: power action %q: want on, off, cycle or status", s)
}

// PowerState is what a BMC reports.
type PowerState string

// Power states.
const (
	PowerOn      PowerState = "on"
	PowerOff     PowerState = "off"
	PowerUnknown PowerState = "unknown"
)

// PowerController runs one action against one BMC and reports the power
// state afterwards (for on/off/cycle: the state asked for, as the BMC
// accepted it). IPMI is the real one; tests may substitute nothing else:
// they run real ipmi_sim BMCs.
type PowerController interface {
	Do(ctx context.Context, bmc BMC, a Action, pxe bool) (PowerState, error)
}

// Errors of the IPMI layer, so callers can tell a bad password from an
// unreachable BMC.
var (
	ErrBMCAuth        = errors.New("bootctl: BMC refused the credentials")
	ErrBMCUnreachable = errors.New("bootctl: BMC did not answer")
)

// IPMI drives BMCs over IPMI v2.0 lanplus with go-ipmi.
type IPMI struct {
	// RequestTimeout bounds one IPMI request (a UDP round trip); Retries
	// is how often go-ipmi resends it. Defaults: 1 s, 2.
	RequestTimeout time.Duration
	Retries        int
}

// Do opens a session, runs a, and always closes the session (a BMC has
// few session slots and a leaked one blocks new sessions for a while).
func (p IPMI) Do(ctx context.Context, bmc BMC, a Action, pxe bool) (PowerState, error) {
	if err := bmc.ready(); err != nil {
		return PowerUnknown, err
	}
	c, err := p.connect(ctx, bmc)
	if err != nil {
		return PowerUnknown, err
	}
	defer c.Close(context.WithoutCancel(ctx)) //nolint:errcheck // best effort: the BMC times the session out anyway
	if pxe && a != ActionStatus && a != ActionOff {
		if err := c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, types.BIOSBootTypeLegacy, false); err != nil {
			return PowerUnknown, fmt.Errorf("set boot device PXE: %w", err)
		}
	}
	switch a {
	case ActionPXE:
		return p.status(ctx, c)
	case ActionStatus:
		return p.status(ctx, c)
	case ActionOn:
		return PowerOn, p.control(ctx, c, chassis.ChassisControlPowerUp)
	case ActionOff:
		return PowerOff, p.control(ctx, c, chassis.ChassisControlPowerDown)
	case ActionCycle:
		// A cycle of a node that is off does nothing on many BMCs: power
		// it up instead, so "cycle" always ends with a fresh boot.
		st, err := p.status(ctx, c)
		if err != nil {
			return PowerUnknown, err
		}
		ctl := chassis.ChassisControlPowerCycle
		if st == PowerOff {
			ctl = chassis.ChassisControlPowerUp
		}
		return PowerOn, p.control(ctx, c, ctl)
	}
	return PowerUnknown, fmt.Errorf("bootctl: unknown action %q", a)
}

func (p IPMI) connect(ctx context.Context, bmc BMC) (*ipmi.Client, error) {
	host, portS, err := net.SplitHostPort(bmc.Addr)
	if err != nil {
		return nil, fmt.Errorf("bootctl: BMC address %q: %w", bmc.Addr, err)
	}
	port, _ := strconv.Atoi(portS)
	c, err := ipmi.NewClient(host, port, bmc.User, bmc.Password)
	if err != nil {
		return nil, fmt.Errorf("bootctl: BMC %s: %w", bmc.Addr, err)
	}
	cs := types.CipherSuiteID3
	if bmc.CipherSuite > 0 {
		cs = types.CipherSuiteID(bmc.CipherSuite)
	}
	timeout, retries := p.RequestTimeout, p.Retries
	if timeout <= 0 {
		timeout = time.Second
	}
	if retries <= 0 {
		retries = 2
	}
	c.WithCipherSuiteID(cs).WithTimeout(timeout).WithRetry(retries)
	if err := c.Connect(ctx); err != nil {
		return nil, classifyConnectErr(bmc, err)
	}
	return c, nil
}

// classifyConnectErr turns go-ipmi's session errors into ErrBMCAuth or
// ErrBMCUnreachable, keeping the original text.
func classifyConnectErr(bmc BMC, err error) error {
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "unauthorized") || strings.Contains(msg, "invalid integrity") ||
		strings.Contains(msg, "rakp") || strings.Contains(msg, "authcode") || strings.Contains(msg, "name"):
		return fmt.Errorf("%w at %s (check the node's BMC user and password): %v", ErrBMCAuth, bmc.Addr, err)
	case strings.Contains(msg, "timeout") || strings.Contains(msg, "deadline") || strings.Contains(msg, "refused") ||
		strings.Contains(msg, "i/o") || strings.Contains(msg, "canceled"):
		return fmt.Errorf("%w at %s: %v", ErrBMCUnreachable, bmc.Addr, err)
	}
	return fmt.Errorf("bootctl: BMC %s: connect: %w", bmc.Addr, err)
}

func (p IPMI) status(ctx context.Context, c *ipmi.Client) (PowerState, error) {
	st, err := c.GetChassisStatus(ctx)
	if err != nil {
		return PowerUnknown, fmt.Errorf("get chassis status: %w", err)
	}
	if st.PowerIsOn {
		return PowerOn, nil
	}
	return PowerOff, nil
}

func (p IPMI) control(ctx context.Context, c *ipmi.Client, ctl chassis.ChassisControl) error {
	if _, err := c.ChassisControl(ctx, ctl); err != nil {
		return fmt.Errorf("chassis control %v: %w", ctl, err)
	}
	return nil
}
