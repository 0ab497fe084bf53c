package bootctl

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// CheckIn is what a booted node's agent reports: which configuration it
// runs, since when, and whether it is busy (for power saving).
type CheckIn struct {
	Node       string    `json:"node"`
	MAC        string    `json:"mac"`
	Image      string    `json:"image"`
	Overlay    string    `json:"overlay"`
	Generation uint64    `json:"generation"`
	BootTime   time.Time `json:"boot_time"`
	At         time.Time `json:"at"`          // when the controller received it
	LastActive time.Time `json:"last_active"` // last time the node was busy (job lease)
	Error      string    `json:"error,omitempty"`
	// MountRequests is the node's mount's request counter (since its
	// boot) and MountActiveAt when the latest request arrived, both from
	// the mount (strata mount --activity-file) on the node's clock, like
	// BootTime and LastActive.
	MountRequests uint64    `json:"mount_requests,omitempty"`
	MountActiveAt time.Time `json:"mount_active_at,omitempty"`
}

// UnknownMAC is a MAC that asked for a boot script but is not registered,
// kept for the operator to adopt (strata node add ... --mac).
type UnknownMAC struct {
	MAC      string    `json:"mac"`
	Remote   string    `json:"remote"`
	LastSeen time.Time `json:"last_seen"`
	Count    int       `json:"count"`
}

// RecordCheckIn stores a node's check-in.
func (s *Store) RecordCheckIn(ctx context.Context, ci CheckIn) error {
	return s.setJSON(ctx, nodesDir+"/"+ci.Node, xCheckIn, ci)
}

// GetCheckIn returns a node's last check-in (ErrNotFound if none).
func (s *Store) GetCheckIn(ctx context.Context, node string) (CheckIn, error) {
	var ci CheckIn
	err := s.getJSON(ctx, nodesDir+"/"+node, xCheckIn, &ci)
	return ci, err
}

// ClearCheckIn forgets a node's check-in (before a power-off or cycle, so
// that a stale one is never taken for the next boot's).
func (s *Store) ClearCheckIn(ctx context.Context, node string) error {
	ino, err := s.ino(ctx, nodesDir+"/"+node)
	if err != nil {
		return err
	}
	err = s.c.RemoveXattr(ctx, ino, xCheckIn)
	if err != nil && !isNoData(err) {
		return fmt.Errorf("bootctl: clear check-in of %s: %w", node, err)
	}
	return nil
}

// NoteUnknownMAC records a boot request from an unregistered MAC.
func (s *Store) NoteUnknownMAC(ctx context.Context, mac, remote string) error {
	p := unknownDir + "/" + macEntryName(mac)
	if _, err := s.createExcl(ctx, p); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	var u UnknownMAC
	if err := s.getJSON(ctx, p, xSeen, &u); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	u.MAC, u.Remote, u.LastSeen = mac, remote, time.Now().UTC()
	u.Count++
	return s.setJSON(ctx, p, xSeen, u)
}

// ListUnknownMACs returns the unregistered MACs that asked to boot.
func (s *Store) ListUnknownMACs(ctx context.Context) ([]UnknownMAC, error) {
	names, err := s.names(ctx, unknownDir)
	if err != nil {
		return nil, err
	}
	var out []UnknownMAC
	for _, n := range names {
		var u UnknownMAC
		if err := s.getJSON(ctx, unknownDir+"/"+n, xSeen, &u); err != nil {
			continue // being written
		}
		out = append(out, u)
	}
	return out, nil
}

func isNoData(err error) bool {
	return errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOENT)
}
