package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-hpc/strata/bootctl"
	"github.com/strata-hpc/strata/client"
)

// actIPMI is the drill's kill and restart through the BMC of the node that
// runs metaserver id (`strata drill meta-failover --via-ipmi`): a kill is
// a power-off, as when a machine loses power; a restart powers it on
// (with PXE, as the boot controller does). The node is found in the boot
// controller's inventory by its meta id.
func (d *drill) actIPMI(ctx context.Context, what, id string) error {
	c, err := d.client(splitList(d.o.meta), false)
	if err != nil {
		return err
	}
	defer c.Close()
	n, err := metaNodeOf(ctx, c, id, d.o.bmcKeyFile)
	if err != nil {
		return err
	}
	a := bootctl.ActionOff
	if what == "restart" {
		a = bootctl.ActionOn
	}
	start := time.Now()
	res := bootctl.PowerAll(ctx, bootctl.IPMI{}, []bootctl.Node{n}, a, bootctl.PowerOptions{PXE: true, Timeout: 5 * time.Second}, d.log)
	if res[0].Err != nil {
		return fmt.Errorf("%s %s via IPMI: %w", what, id, res[0].Err)
	}
	d.log.Info("drill: power "+string(a)+" via IPMI", "node", n.Name, "took", time.Since(start))
	return nil
}

// metaNodeOf finds the inventory node whose metaserver is id.
func metaNodeOf(ctx context.Context, c *client.Client, id, keyFile string) (bootctl.Node, error) {
	st := bootctl.NewStore(c, nil)
	if err := withKey(st, keyFile); err != nil {
		return bootctl.Node{}, err
	}
	nodes, err := st.ListNodes(ctx)
	if err != nil {
		return bootctl.Node{}, err
	}
	for _, n := range nodes {
		if n.MetaID == id {
			return n, nil
		}
	}
	return bootctl.Node{}, errors.New("no node in the boot controller's inventory runs metaserver " + id + " (strata node add ... --meta-id " + id + ")")
}
