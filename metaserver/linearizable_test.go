package metaserver_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-hpc/strata/internal/linearize"
	"github.com/strata-hpc/strata/internal/metaconn"
	"github.com/strata-hpc/strata/internal/rpcerr"
	"github.com/strata-hpc/strata/internal/testcluster"
	"github.com/strata-hpc/strata/proto/stratapb"
)

// The registers of the linearizability check are an xattr on each of a
// few files: writes are SetXattr (raft commands), reads are GetXattr
// (linearizable reads through the leader).
type regInput struct {
	key   int
	write bool
	value string
}

// TestLinearizableDuringFailovers records a history of reads and writes
// from several clients while leaders are killed and partitioned, and checks
// it with porcupine: any history that no sequential order explains (a
// stale read, a lost or doubled write, split brain) fails the test.
func TestLinearizableDuringFailovers(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Meta: 3})
	const keys, clients = 3, 5
	inos := make([]uint64, keys)
	setup := dial(t, c)
	for k := range inos {
		ino, err := createOne(setup, 1000+k)
		if err != nil {
			t.Fatal(err)
		}
		inos[k] = ino
	}
	ctx, stop := context.WithTimeout(context.Background(), 6*time.Second)
	defer stop()
	var mu sync.Mutex
	var history []linearize.Op
	var wg sync.WaitGroup
	for id := 0; id < clients; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := runRegisterClient(ctx, t, c, id, inos)
			mu.Lock()
			history = append(history, ops...)
			mu.Unlock()
		}()
	}
	faults := injectLeaderFaults(ctx, c)
	wg.Wait()
	<-faults
	if len(history) < 100 {
		t.Fatalf("only %d operations recorded", len(history))
	}
	switch err := linearize.Check(history, time.Minute); {
	case err == nil:
		t.Logf("%d operations across failovers: linearizable", len(history))
	case errors.Is(err, linearize.ErrTimeout):
		t.Logf("%d operations: %v", len(history), err)
	default:
		t.Fatalf("history of %d operations: %v", len(history), err)
	}
}

// runRegisterClient issues reads and writes until ctx ends and returns
// what it saw, with invocation and response times.
func runRegisterClient(ctx context.Context, t *testing.T, c *testcluster.Cluster, id int, inos []uint64) []linearize.Op {
	mc, err := metaconn.New(c.MetaAddrs(), metaconn.Options{DialOptions: metaDial(c)})
	if err != nil {
		t.Error(err)
		return nil
	}
	defer mc.Close()
	var ops []linearize.Op
	r := rand.New(rand.NewPCG(uint64(id), 99))
	for seq := uint64(1); ctx.Err() == nil; seq++ {
		in := regInput{key: r.IntN(len(inos)), write: r.IntN(2) == 0, value: fmt.Sprintf("c%d-%d", id, seq)}
		hdr := &stratapb.RequestHeader{ClientId: fmt.Sprintf("lin-%d", id), RequestId: seq}
		call := time.Now().UnixNano()
		out, err := registerOp(mc, hdr, inos[in.key], in)
		ret := time.Now().UnixNano()
		switch {
		case err == nil:
			if !in.write {
				in.value = out
			}
			ops = append(ops, linearize.Op{Client: id, Key: strconv.Itoa(in.key), Write: in.write, Value: in.value, Call: call, Return: ret})
		case in.write:
			// Outcome unknown: it may take effect at any later time.
			ops = append(ops, linearize.Op{Client: id, Key: strconv.Itoa(in.key), Write: true, Value: in.value, Call: call, Pending: true})
			return ops // a client with an op in doubt issues no more
		}
	}
	return ops
}

func registerOp(mc *metaconn.Conn, hdr *stratapb.RequestHeader, ino uint64, in regInput) (string, error) {
	var out string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := mc.Call(ctx, func(ctx context.Context, m stratapb.MetaClient) error {
		if in.write {
			_, err := m.SetXattr(ctx, &stratapb.SetXattrRequest{Header: hdr, Ino: ino, Name: "user.v", Value: []byte(in.value)})
			return err
		}
		r, err := m.GetXattr(ctx, &stratapb.GetXattrRequest{Header: hdr, Ino: ino, Name: "user.v"})
		if rpcerr.ErrnoOf(err) == syscall.ENODATA {
			out = ""
			return nil
		}
		if err == nil {
			out = string(r.Value)
		}
		return err
	})
	return out, err
}

// injectLeaderFaults alternately kills and partitions the leader until ctx
// ends, then heals and restarts everything.
func injectLeaderFaults(ctx context.Context, c *testcluster.Cluster) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := 0; ctx.Err() == nil; round++ {
			time.Sleep(700 * time.Millisecond)
			l := c.Leader()
			if l < 0 {
				continue
			}
			if round%2 == 0 {
				c.KillMeta(l)
				time.Sleep(500 * time.Millisecond)
				c.RestartMeta(l)
			} else {
				c.PartitionMeta(l)
				time.Sleep(800 * time.Millisecond)
				c.HealMeta(l)
			}
		}
	}()
	return done
}
