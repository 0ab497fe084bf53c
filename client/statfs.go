package client

import "context"

// FSStats is the capacity of the cluster as statfs(2) should show it.
type FSStats struct {
	CapacityBytes uint64 // raw capacity of the live dataservers
	FreeBytes     uint64 // raw free space of the live, writable dataservers
	Inodes        uint64 // inodes in use
}

// StatFS sums the capacity and free space the live dataservers last
// reported. The figures are raw bytes: erasure coding (4+2 by default)
// stores 1.5 bytes per byte of file data, and small files 3.
func (c *Client) StatFS(ctx context.Context) (FSStats, error) {
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		return FSStats{}, err
	}
	out := FSStats{Inodes: st.GetInodes()}
	for _, ds := range st.GetDataservers() {
		if !ds.GetAlive() {
			continue
		}
		out.CapacityBytes += ds.GetCapacityBytes()
		if !ds.GetReadOnly() {
			out.FreeBytes += ds.GetFreeBytes()
		}
	}
	return out, nil
}
