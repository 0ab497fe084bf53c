package bootctl

import (
	"fmt"
	"strings"
)

// BootParams are the kernel arguments the boot agent reads.
type BootParams struct {
	Meta       string // strata.meta: metadata service address(es)
	Image      string // strata.image: NAME:TAG
	Overlay    string // strata.overlay
	Node       string // strata.node
	Group      string // strata.group
	Generation uint64 // strata.gen: the group configuration's generation
	Bootctl    string // strata.bootctl: check-in URL base
}

// Args renders the parameters as kernel arguments.
func (p BootParams) Args() string {
	args := []string{
		"strata.meta=" + p.Meta,
		"strata.image=" + p.Image,
		"strata.overlay=" + p.Overlay,
		"strata.node=" + p.Node,
		"strata.group=" + p.Group,
		fmt.Sprintf("strata.gen=%d", p.Generation),
	}
	if p.Bootctl != "" {
		args = append(args, "strata.bootctl="+p.Bootctl)
	}
	return strings.Join(args, " ")
}

// ParseCmdline reads the strata.* arguments out of a kernel command line.
func ParseCmdline(cmdline string) (BootParams, error) {
	var p BootParams
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !strings.HasPrefix(k, "strata.") {
			continue
		}
		switch k {
		case "strata.meta":
			p.Meta = v
		case "strata.image":
			p.Image = v
		case "strata.overlay":
			p.Overlay = v
		case "strata.node":
			p.Node = v
		case "strata.group":
			p.Group = v
		case "strata.bootctl":
			p.Bootctl = v
		case "strata.gen":
			if _, err := fmt.Sscan(v, &p.Generation); err != nil {
				return p, fmt.Errorf("bootctl: kernel argument strata.gen=%q: not a number", v)
			}
		}
	}
	var missing []string
	for k, v := range map[string]string{"strata.meta": p.Meta, "strata.image": p.Image, "strata.node": p.Node} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("bootctl: kernel command line lacks %s (not booted by the Strata boot controller?)", strings.Join(missing, ", "))
	}
	if err := CheckImageRef(p.Image); err != nil {
		return p, err
	}
	return p, CheckName("node", p.Node)
}

// ipxeScript is the boot script of a registered node.
func ipxeScript(n Node, g Group, p BootParams, kernel, initrd string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!ipxe\n# Strata boot configuration: node %s, group %s, generation %d\n", n.Name, g.Name, g.Config.Generation)
	fmt.Fprintf(&b, "echo Strata: booting %s as %s (image %s, overlay %s)\n", n.Name, g.Name, p.Image, p.Overlay)
	args := p.Args()
	if g.Config.KernelArgs != "" {
		args += " " + g.Config.KernelArgs
	}
	fmt.Fprintf(&b, "kernel %s initrd=initrd %s\n", kernel, args)
	fmt.Fprintf(&b, "initrd --name initrd %s\n", initrd)
	b.WriteString("boot\n")
	return b.String()
}

// notRegisteredScript is what an unknown MAC gets: a clear message on the
// console, then a retry later (the operator may adopt it meanwhile).
func notRegisteredScript(mac string) string {
	return fmt.Sprintf(`#!ipxe
# Strata: MAC %[1]s is not registered
echo Strata boot controller: this machine (MAC %[1]s) is not registered.
echo An operator can adopt it: strata node add NAME --mac %[1]s --bmc HOST:PORT --group GROUP
echo Retrying in 60 seconds.
sleep 60
chain --autofree ${0}
`, mac)
}

// noGroupScript is what a registered node without a group gets.
func noGroupScript(n Node, why string) string {
	return fmt.Sprintf(`#!ipxe
# Strata: node %[1]s has no boot configuration
echo Strata boot controller: node %[1]s %[2]s.
echo An operator can assign one: strata node set %[1]s --group GROUP
echo Retrying in 60 seconds.
sleep 60
chain --autofree ${0}
`, n.Name, why)
}
