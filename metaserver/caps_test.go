package metaserver

import (
	"bytes"
	"io"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-hpc/strata/proto/stratapb"
)

func capKeyCmd(id uint32, activate, retireOld int64) *stratapb.AddCapKeyCommand {
	return &stratapb.AddCapKeyCommand{
		Key:         &stratapb.CapabilityKey{Id: id, Secret: bytes.Repeat([]byte{byte(id)}, capSecretBytes), ActivateNs: activate},
		RetireOldNs: retireOld,
	}
}

// TestCapKeyRotationFSM: keys are added through raft, the old one retires
// when the command says, retired keys are forgotten at the next rotation,
// the set stays bounded, and the signing key is the newest active one.
func TestCapKeyRotationFSM(t *testing.T) {
	tf := newTestFSM(t)
	t0 := tf.now
	if _, err := tf.apply(CmdAddCapKey, nil, capKeyCmd(1, t0, 0)); err != nil {
		t.Fatal(err)
	}
	// Rotation: key 2 signs from t0+1e5, key 1 retires at t0+1e6 (each
	// apply advances the clock by 1000).
	if _, err := tf.apply(CmdAddCapKey, nil, capKeyCmd(2, t0+1e5, t0+1e6)); err != nil {
		t.Fatal(err)
	}
	keys := tf.f.st.capKeys
	if len(keys) != 2 || keys[0].RetireNs != t0+1e6 || keys[1].RetireNs != 0 {
		t.Fatalf("keys after rotation: %v", keys)
	}
	if k, _ := signingKey(keys, t0+5e4); k.ID != 1 {
		t.Fatalf("before activation the leader signs with key %d, want 1", k.ID)
	}
	if k, _ := signingKey(keys, t0+1e5); k.ID != 2 {
		t.Fatalf("after activation the leader signs with key %d, want 2", k.ID)
	}
	// An old or repeated id is refused; so is a short secret.
	_, err := tf.apply(CmdAddCapKey, nil, capKeyCmd(2, t0, 0))
	wantErrno(t, err, syscall.EEXIST)
	bad := capKeyCmd(3, t0, 0)
	bad.Key.Secret = []byte("short")
	_, err = tf.apply(CmdAddCapKey, nil, bad)
	wantErrno(t, err, syscall.EINVAL)
	// Rotating faster than keys retire is bounded.
	tf.apply(CmdAddCapKey, nil, capKeyCmd(3, t0, 1<<62))
	tf.apply(CmdAddCapKey, nil, capKeyCmd(4, t0, 1<<62))
	_, err = tf.apply(CmdAddCapKey, nil, capKeyCmd(5, t0, 1<<62))
	wantErrno(t, err, syscall.EBUSY)
	// Once key 1 has retired, the next rotation drops it.
	tf.now = t0 + 2e6
	if _, err := tf.apply(CmdAddCapKey, nil, capKeyCmd(5, tf.now, 1<<62)); err != nil {
		t.Fatal(err)
	}
	for _, k := range tf.f.st.capKeys {
		if k.Id == 1 {
			t.Fatal("retired key 1 is still held")
		}
	}

	// The keys survive a snapshot and restore.
	snap, err := tf.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	f2 := newTestFSM(t)
	if err := f2.f.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if len(f2.f.st.capKeys) != len(tf.f.st.capKeys) {
		t.Fatalf("restored %d keys, want %d", len(f2.f.st.capKeys), len(tf.f.st.capKeys))
	}
	for i, k := range tf.f.st.capKeys {
		if !proto.Equal(k, f2.f.st.capKeys[i]) {
			t.Fatalf("restored key %d differs", i)
		}
	}
}
