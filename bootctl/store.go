package bootctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"sync"
	"syscall"

	"github.com/strata-hpc/strata/client"
)

// The inventory lives in the metadata service, as empty files with
// extended attributes under a reserved hidden tree (see NOTES.md, "Boot
// controller"). Extended attributes are Raft state, so the inventory is
// exactly as available as the namespace and needs no dataserver:
//
//	/.bootctl/nodes/NAME     xattr node = Node (JSON), checkin = CheckIn
//	/.bootctl/macs/aa-bb-..  xattr owner = node name (the uniqueness index)
//	/.bootctl/groups/NAME    xattr group = Group (JSON)
//	/.bootctl/unknown/aa-..  xattr seen = UnknownMAC (JSON)
//	/.bootctl/lease/EPOCH    the controller's leader lease (lease.go)
//	/.bootctl/events         xattr events = recent watchdog events
//
// Names and MACs are unique because their entries are created with
// O_EXCL, which the metadata service serialises through Raft: of two
// concurrent adds of one name or MAC, exactly one wins.
const (
	Root       = "/.bootctl"
	nodesDir   = Root + "/nodes"
	macsDir    = Root + "/macs"
	groupsDir  = Root + "/groups"
	unknownDir = Root + "/unknown"
	leaseDir   = Root + "/lease"
	eventsFile = Root + "/events"

	xNode    = "user.strata.node"
	xCheckIn = "user.strata.checkin"
	xOwner   = "user.strata.owner"
	xGroup   = "user.strata.group"
	xSeen    = "user.strata.seen"
	xEvents  = "user.strata.events"
	xLease   = "user.strata.lease"
)

// Errors of the inventory.
var (
	ErrNotFound = errors.New("bootctl: not found")
	ErrExists   = errors.New("bootctl: already exists")
)

// Store is the inventory, read and written through the client library.
type Store struct {
	c   *client.Client
	log *slog.Logger
	// mu serialises read-modify-write updates made by this process; two
	// controllers never update one record at once because only the lease
	// holder runs switches (operators' CLI edits are last-writer-wins).
	mu sync.Mutex
	// key opens and seals BMC passwords (nil: they stay sealed).
	key *Key
	// Audit records node adds, removals and changes (audit.go).
	Audit Audit
}

// SetKey gives the store the key of the BMC passwords: nodes read through
// it come with their passwords decrypted, and new passwords are sealed
// with it. Without one, passwords stay sealed and cannot be set.
func (s *Store) SetKey(k *Key) { s.key = k }

// NewStore returns the inventory of the cluster c talks to.
func NewStore(c *client.Client, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{c: c, log: log.With("component", "inventory")}
}

// Client is the client the store uses.
func (s *Store) Client() *client.Client { return s.c }

// Init creates the inventory's directories (idempotent).
func (s *Store) Init(ctx context.Context) error {
	for _, d := range []string{nodesDir, macsDir, groupsDir, unknownDir, leaseDir} {
		if err := s.c.MkdirAll(ctx, d, 0o700); err != nil {
			return fmt.Errorf("bootctl: init inventory %s: %w", d, err)
		}
	}
	if _, err := s.createExcl(ctx, eventsFile); err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

// createExcl creates an empty file with O_EXCL; ErrExists if it is there.
func (s *Store) createExcl(ctx context.Context, p string) (uint64, error) {
	dir, err := s.c.Stat(ctx, path.Dir(p))
	if errors.Is(err, syscall.ENOENT) {
		return 0, fmt.Errorf("bootctl: inventory not initialised (%s missing; run a command that writes it, e.g. strata group create): %w", path.Dir(p), ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("bootctl: %s: %w", path.Dir(p), err)
	}
	attr, err := s.c.Create(ctx, dir.GetIno(), path.Base(p), 0o600)
	if errors.Is(err, syscall.EEXIST) {
		return 0, fmt.Errorf("%s: %w", p, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("bootctl: create %s: %w", p, err)
	}
	return attr.GetIno(), nil
}

// ino returns the inode of p, ErrNotFound if missing.
func (s *Store) ino(ctx context.Context, p string) (uint64, error) {
	attr, err := s.c.Stat(ctx, p)
	if errors.Is(err, syscall.ENOENT) {
		return 0, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("bootctl: %s: %w", p, err)
	}
	return attr.GetIno(), nil
}

// getJSON reads xattr name of p into v.
func (s *Store) getJSON(ctx context.Context, p, name string, v any) error {
	ino, err := s.ino(ctx, p)
	if err != nil {
		return err
	}
	b, err := s.c.GetXattr(ctx, ino, name)
	if errors.Is(err, syscall.ENODATA) || errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%s %s: %w", p, name, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("bootctl: read %s: %w", p, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("bootctl: decode %s %s: %w", p, name, err)
	}
	return nil
}

// setJSON writes v as xattr name of p.
func (s *Store) setJSON(ctx context.Context, p, name string, v any) error {
	ino, err := s.ino(ctx, p)
	if err != nil {
		return err
	}
	return s.setJSONIno(ctx, ino, p, name, v)
}

func (s *Store) setJSONIno(ctx context.Context, ino uint64, p, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bootctl: encode %s: %w", p, err)
	}
	if err := s.c.SetXattr(ctx, ino, name, b, 0); err != nil {
		return fmt.Errorf("bootctl: write %s: %w", p, err)
	}
	return nil
}

// names lists the entries of an inventory directory, sorted.
func (s *Store) names(ctx context.Context, dir string) ([]string, error) {
	ents, err := s.c.ReadDir(ctx, dir)
	if errors.Is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bootctl: list %s: %w", dir, err)
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.GetName())
	}
	sort.Strings(out)
	return out, nil
}

func (s *Store) remove(ctx context.Context, p string) error {
	err := s.c.Remove(ctx, p)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("bootctl: remove %s: %w", p, err)
	}
	return nil
}
