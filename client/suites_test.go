package client

import (
	"testing"
)

// The client's tests against a real cluster are grouped in two suites of
// subtests, each on its own cluster (8 dataservers, testPolicy): starting
// a cluster costs about half a second, writing a shard file a few
// milliseconds, so the subtests share what they can. Each subtest works
// in a directory of its own; run one with -run 'TestOps/ReadAt'.

// TestOps runs the data and namespace operations on a healthy cluster.
// At the end, every file the subtests left behind must read back as the
// model says.
func TestOps(t *testing.T) {
	e := newEnv(t, 8, testPolicy())
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"PutGetSizes", testPutGetSizes},
		{"PutOverwriteTruncates", testPutOverwriteTruncates},
		{"PutReaderError", testPutReaderError},
		{"PutCanceled", testPutCanceled},
		{"ReadAt", testReadAt},
		{"GetManyChunks", testGetManyChunks},
		{"PutThroughSymlink", testPutThroughSymlink},
		{"WriteAtTruncateModel", testWriteAtTruncateModel},
		{"TruncateThenGrow", testTruncateThenGrow},
		{"WriteAtConflict", testWriteAtConflict},
		{"WriteAtErrors", testWriteAtErrors},
		{"NamespaceOps", testNamespaceOps},
		{"InodeAPI", testInodeAPI},
		{"SetPolicy", testSetPolicy},
		{"ResolveSymlinks", testResolveSymlinks},
		{"SymlinkHopLimit", testSymlinkHopLimit},
		{"RetriesReuseRequestID", testRetriesReuseRequestID},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, e.sub(t)) })
	}
	e.verifyAll(t)
}

// TestFaults breaks shards, disks, dataservers and the metadata leader for
// real. It first writes a set of files; after every fault is undone, they
// and every file written since must read back byte for byte.
func TestFaults(t *testing.T) {
	e := newEnv(t, 8, testPolicy())
	base := e.in(t, "base")
	base.put("/empty", nil)
	base.put("/small", randBytes(1000, 101))           // 3 replicas
	base.put("/one", randBytes(64<<10, 102))           // one full 4+2 chunk
	base.put("/many", randBytes(10*(64<<10)+333, 103)) // 11 chunks
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"DegradedReadEveryCombination", testDegradedReadEveryCombination},
		{"DegradedReadReportsBadShards", testDegradedReadReportsBadShards},
		{"ReadFailsWithThreeMissing", testReadFailsWithThreeMissing},
		{"SilentCorruption", testSilentCorruption},
		{"ReplicatedFallback", testReplicatedFallback},
		{"ReadChunkCutByServer", testReadChunkCutByServer},
		{"WriteUsesSpares", testWriteUsesSpares},
		{"WriteDegraded", testWriteDegraded},
		{"MutationsThroughLeaderPartition", testMutationsThroughLeaderPartition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, e.sub(t))
			e.verifyAll(t)
		})
	}
}
