package linearize

import (
	"errors"
	"testing"
	"time"
)

func w(client int, key, v string, call, ret int64) Op {
	return Op{Client: client, Key: key, Write: true, Value: v, Call: call, Return: ret}
}

func r(client int, key, v string, call, ret int64) Op {
	return Op{Client: client, Key: key, Value: v, Call: call, Return: ret}
}

// TestCheck shows that the checker accepts what a correct register may do
// and rejects the three failures a metadata failover can cause.
func TestCheck(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
		h    []Op
	}{
		{"empty", true, nil},
		{"sequential", true, []Op{w(0, "a", "1", 0, 10), r(1, "a", "1", 20, 30), w(0, "a", "2", 40, 50), r(1, "a", "2", 60, 70)}},
		{"unwritten register reads empty", true, []Op{r(0, "a", "", 0, 10)}},
		{"read concurrent with write may see either value", true, []Op{
			w(0, "a", "1", 0, 10), w(0, "a", "2", 20, 50), r(1, "a", "1", 25, 30), r(2, "a", "2", 26, 31)}},
		{"pending write may take effect late", true, []Op{
			{Client: 0, Key: "a", Write: true, Value: "x", Call: 0, Pending: true}, r(1, "a", "", 10, 20), r(1, "a", "x", 30, 40)}},
		{"pending write may never take effect", true, []Op{
			{Client: 0, Key: "a", Write: true, Value: "x", Call: 0, Pending: true}, r(1, "a", "", 10, 20), r(1, "a", "", 30, 40)}},
		{"keys are independent", true, []Op{w(0, "a", "1", 0, 10), r(1, "b", "", 20, 30)}},

		// A read after an acknowledged write returns the old value: a
		// follower (or an old leader) answered from its own state.
		{"stale read", false, []Op{w(0, "a", "new", 0, 10), r(1, "a", "", 20, 30)}},
		// Two acknowledged writes in a row; later reads show the first:
		// the second was acknowledged but lost (e.g. by a leader that was
		// deposed before it committed).
		{"lost write", false, []Op{
			w(0, "a", "1", 0, 10), w(0, "a", "2", 20, 30), r(1, "a", "2", 40, 50), r(1, "a", "1", 60, 70)}},
		// Two leaders at once: each side accepts a write and serves reads
		// of its own, so readers see the values alternate without a write
		// between.
		{"split brain", false, []Op{
			w(0, "a", "left", 0, 10), w(1, "a", "right", 0, 10),
			r(2, "a", "left", 20, 30), r(3, "a", "right", 40, 50), r(2, "a", "left", 60, 70)}},
		{"read of a value never written", false, []Op{w(0, "a", "1", 0, 10), r(1, "a", "7", 20, 30)}},
		{"one bad key among good ones", false, []Op{
			w(0, "a", "1", 0, 10), r(1, "a", "1", 20, 30), w(0, "b", "1", 0, 10), r(1, "b", "", 20, 30)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.h, 10*time.Second)
			if tc.ok && err != nil {
				t.Fatalf("a linearizable history was rejected: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrNotLinearizable) {
				t.Fatalf("a non-linearizable history passed: %v", err)
			}
		})
	}
}

func TestCheckBadInput(t *testing.T) {
	for name, h := range map[string][]Op{
		"returns before call": {r(0, "a", "", 10, 5)},
		"pending read":        {{Key: "a", Call: 0, Pending: true}},
	} {
		if err := Check(h, time.Second); err == nil || errors.Is(err, ErrNotLinearizable) {
			t.Errorf("%s: %v, want an input error", name, err)
		}
	}
}
