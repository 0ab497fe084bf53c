// Package linearize checks that a recorded history of register reads and
// writes is linearizable, with porcupine (github.com/anishathalye/porcupine).
//
// A history is what clients saw: each operation with the time it was
// called and the time it returned. It is linearizable when some order of
// the operations, consistent with real time (an operation that returned
// before another was called comes first), explains every read: each read
// returns the value of the last write before it in that order, or "" when
// there is none. A stale read, a lost acknowledged write and two leaders
// serving at once (split brain) all produce histories no order explains.
//
// Registers are independent, so each key is checked on its own: the check
// stays fast and a failure names the key.
package linearize

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Op is one operation on one register.
type Op struct {
	Client int    `json:"client"`
	Key    string `json:"key"`
	Write  bool   `json:"write"`
	// Value is what a write wrote or what a read returned ("" for a
	// register never written).
	Value string `json:"value"`
	// Call and Return are when the client called the operation and when it
	// got the answer, in nanoseconds on one clock (one process's monotonic
	// clock, say).
	Call   int64 `json:"call_ns"`
	Return int64 `json:"return_ns"`
	// Pending marks a write whose outcome the client never learnt (it
	// failed or timed out): it may have taken effect at any time after its
	// call, or never. Return is ignored. Reads that failed are left out of
	// a history: they observed nothing.
	Pending bool `json:"pending,omitempty"`
}

// ErrNotLinearizable is returned (wrapped, naming the key) when no order
// explains the history.
var ErrNotLinearizable = errors.New("linearize: history is not linearizable")

// ErrTimeout is returned when the checker ran out of time before deciding.
var ErrTimeout = errors.New("linearize: check timed out")

type input struct {
	write bool
	value string
}

// register is the model: a single value, initially "".
var register = porcupine.Model{
	Init: func() interface{} { return "" },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		i := in.(input)
		if i.write {
			return true, i.value
		}
		return out.(string) == state.(string), state
	},
	Equal: func(a, b interface{}) bool { return a == b },
}

// Check returns nil if the history is linearizable, an error wrapping
// ErrNotLinearizable naming the first key (in sorted order) that is not,
// or one wrapping ErrTimeout if deciding took longer than timeout
// (split over the keys).
func Check(history []Op, timeout time.Duration) error {
	byKey := map[string][]porcupine.Operation{}
	for i, op := range history {
		if op.Return < op.Call && !op.Pending {
			return fmt.Errorf("linearize: operation %d (key %q) returns before it is called", i, op.Key)
		}
		ret := op.Return
		if op.Pending {
			if !op.Write {
				return fmt.Errorf("linearize: operation %d (key %q) is a pending read; leave failed reads out", i, op.Key)
			}
			ret = math.MaxInt64 // may take effect at any later time
		}
		out := ""
		if !op.Write {
			out = op.Value
		}
		byKey[op.Key] = append(byKey[op.Key], porcupine.Operation{
			ClientId: op.Client, Input: input{write: op.Write, value: op.Value},
			Call: op.Call, Output: out, Return: ret,
		})
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		per := timeout / time.Duration(len(keys))
		switch porcupine.CheckOperationsTimeout(register, byKey[k], per) {
		case porcupine.Ok:
		case porcupine.Illegal:
			return fmt.Errorf("%w: key %q (%d operations)", ErrNotLinearizable, k, len(byKey[k]))
		default:
			return fmt.Errorf("%w: key %q (%d operations) after %v", ErrTimeout, k, len(byKey[k]), per)
		}
	}
	return nil
}
