package metaserver

import (
	"sort"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func sortStatus(r *stratapb.ClusterStatusResponse) {
	sort.Slice(r.Members, func(i, j int) bool { return r.Members[i].Id < r.Members[j].Id })
	sort.Slice(r.Dataservers, func(i, j int) bool { return r.Dataservers[i].Id < r.Dataservers[j].Id })
}
