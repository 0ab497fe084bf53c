package metaserver

import "testing"

// TestPlacementSpreadsDomains: with 3 zones of 3 hosts, a 6-shard stripe
// puts exactly 2 shards in each zone, each on its own host; with 2 racks in
// one zone, the shards alternate racks.
func TestPlacementSpreadsDomains(t *testing.T) {
	var cands []candidate
	id := uint32(1)
	for _, z := range []string{"a", "b", "c"} {
		for h := 0; h < 3; h++ {
			cands = append(cands, candidate{id: id, zone: z, host: z + string(rune('0'+h))})
			id++
		}
	}
	for round := 0; round < 20; round++ {
		servers, _, err := place(cands, len(cands), 6, 4)
		if err != nil {
			t.Fatal(err)
		}
		perZone, hosts := map[string]int{}, map[string]bool{}
		for _, s := range servers {
			c := cands[s-1]
			perZone[c.zone]++
			if hosts[c.host] {
				t.Fatalf("two shards on host %s: %v", c.host, servers)
			}
			hosts[c.host] = true
		}
		for z, n := range perZone {
			if n != 2 {
				t.Fatalf("zone %s got %d shards, want 2: %v", z, n, servers)
			}
		}
	}
	racks := []candidate{{id: 1, rack: "r1", host: "h1"}, {id: 2, rack: "r1", host: "h2"}, {id: 3, rack: "r2", host: "h3"}, {id: 4, rack: "r2", host: "h4"}}
	out := spreadDomains(racks, 2)
	if out[0].rack == out[1].rack {
		t.Fatalf("two shards in rack %s of two racks", out[0].rack)
	}
}
