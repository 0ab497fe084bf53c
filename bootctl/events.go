package bootctl

import (
	"context"
	"errors"
	"time"
)

// Event is one step the watchdog took, kept in the metadata service so that
// `strata bootctl status` shows it from anywhere.
type Event struct {
	Seq    uint64    `json:"seq"`
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // e.g. voter-dead, power-cycle, rejoined, spare-on, voter-added, voter-removed
	Node   string    `json:"node,omitempty"`
	Member string    `json:"member,omitempty"`
	Detail string    `json:"detail,omitempty"`
	By     string    `json:"by,omitempty"` // the controller that acted
}

const maxEvents = 100

// AppendEvent adds an event to the log (the most recent maxEvents kept)
// and returns it with its sequence number.
func (s *Store) AppendEvent(ctx context.Context, e Event) (Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, err := s.Events(ctx)
	if err != nil {
		return e, err
	}
	e.Seq, e.At = 1, time.Now().UTC()
	if len(evs) > 0 {
		e.Seq = evs[len(evs)-1].Seq + 1
	}
	evs = append(evs, e)
	if len(evs) > maxEvents {
		evs = evs[len(evs)-maxEvents:]
	}
	return e, s.setJSON(ctx, eventsFile, xEvents, evs)
}

// Events returns the event log, oldest first.
func (s *Store) Events(ctx context.Context) ([]Event, error) {
	var evs []Event
	err := s.getJSON(ctx, eventsFile, xEvents, &evs)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return evs, err
}
