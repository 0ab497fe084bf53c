package metaserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/strata-hpc/strata/internal/netfault"
)

// serviceIP is the dedicated address of the metadata service. The leader
// holds it: it adds the address to its interface, announces it with
// gratuitous ARP so that neighbours update their caches at once, and
// serves gRPC on it. A server that loses leadership (or a partitioned old
// leader, once its lease lapses and raft steps it down) drops it: it closes
// the listener, cuts the connections made through it, and removes the
// address. Clients dialing the service IP thus follow the leader.
//
// Correctness never depends on the IP: a follower refuses what it cannot
// serve and names the leader. On a loopback address (127.0.0.0/8, as in
// `strata dev`) there is nothing to add or announce: every loopback address
// is local, and only the leader listens on the service IP.
type serviceIP struct {
	ip    net.IP
	mask  net.IPMask
	iface string // "" for loopback
	port  string
	log   *slog.Logger

	mu     sync.Mutex
	held   bool
	added  bool
	closed bool // the server is shutting down: never take the ip again
	lis    net.Listener
	sw     *netfault.Switch
}

// newServiceIP parses "IP" or "IP/len"; iface is required unless the IP is
// a loopback address.
func newServiceIP(cidr, iface, grpcAddr string, servicePort int, log *slog.Logger) (*serviceIP, error) {
	ip, ipnet, err := net.ParseCIDR(cidr)
	if err != nil {
		if ip = net.ParseIP(cidr); ip == nil {
			return nil, fmt.Errorf("service ip %q: want an address or address/prefix", cidr)
		}
		ipnet = &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("service ip %s: only IPv4 is supported", ip)
	}
	if !ip.IsLoopback() && iface == "" {
		return nil, fmt.Errorf("service ip %s needs --service-iface (the interface to put it on)", ip)
	}
	if ip.IsLoopback() {
		iface = ""
	}
	_, port, err := net.SplitHostPort(grpcAddr)
	if err != nil {
		return nil, fmt.Errorf("service ip: grpc address %q: %w", grpcAddr, err)
	}
	if servicePort < 0 || servicePort > 65535 {
		return nil, fmt.Errorf("service port %d out of range", servicePort)
	}
	if servicePort > 0 {
		port = strconv.Itoa(servicePort)
	}
	return &serviceIP{ip: ip.To4(), mask: ipnet.Mask, iface: iface, port: port, log: log.With("service_ip", ip.String())}, nil
}

func (v *serviceIP) String() string { return net.JoinHostPort(v.ip.String(), v.port) }

// acquire takes the address and serves g on it. Safe to call when held.
func (v *serviceIP) acquire(g *grpc.Server) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.held || v.closed {
		return nil
	}
	if err := v.addAddr(); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", v.String())
	if err != nil {
		v.delAddr()
		return fmt.Errorf("metaserver: listen on service ip %s: %w", v, err)
	}
	v.sw = netfault.New()
	v.lis = v.sw.Listener(lis)
	go g.Serve(v.lis) // returns when the listener closes
	if v.iface != "" {
		if err := sendGratuitousARP(v.iface, v.ip); err != nil {
			v.log.Warn("gratuitous ARP failed; neighbours learn the move when their cache expires", "err", err)
		}
	}
	v.held = true
	v.log.Info("service ip taken", "iface", v.iface)
	return nil
}

// clearStale removes the address if this host still carries it from a
// run that crashed while leader (a killed process never released it):
// left in place it would answer ARP beside the real leader's.
func (v *serviceIP) clearStale() {
	if v.iface == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.added = true // let delAddr try; it ignores "not there"
	v.delAddr()
}

// shutdown releases the address for good.
func (v *serviceIP) shutdown() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.release()
}

// release gives the address up. Safe to call when not held.
func (v *serviceIP) release() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.held {
		return
	}
	v.lis.Close()
	v.sw.Cut() // connections made through the service ip must go too
	v.delAddr()
	v.held = false
	v.log.Info("service ip released")
}

func (v *serviceIP) addAddr() error {
	if v.iface == "" {
		return nil
	}
	link, err := netlink.LinkByName(v.iface)
	if err != nil {
		return fmt.Errorf("metaserver: service ip interface %s: %w", v.iface, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: v.ip, Mask: v.mask}}
	if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("metaserver: add %s to %s: %w", addr.IPNet, v.iface, err)
	}
	v.added = true
	return nil
}

func (v *serviceIP) delAddr() {
	if !v.added {
		return
	}
	v.added = false
	link, err := netlink.LinkByName(v.iface)
	if err == nil {
		err = netlink.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: v.ip, Mask: v.mask}})
	}
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		v.log.Error("could not remove the service ip", "iface", v.iface, "err", err)
	}
}

// sendGratuitousARP announces ip at the interface's MAC address, as an ARP
// request and an ARP reply to the broadcast address (hosts differ in which
// one they heed).
func sendGratuitousARP(iface string, ip net.IP) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("interface %s has no Ethernet address", iface)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], bcast)
	for _, op := range []uint16{1, 2} { // request, reply
		if err := unix.Sendto(fd, arpFrame(op, ifi.HardwareAddr, ip.To4(), bcast), 0, to); err != nil {
			return fmt.Errorf("send ARP on %s: %w", iface, err)
		}
	}
	return nil
}

// arpFrame builds an Ethernet frame carrying a gratuitous ARP: sender and
// target protocol address are both ip.
func arpFrame(op uint16, mac net.HardwareAddr, ip net.IP, bcast []byte) []byte {
	f := make([]byte, 14+28)
	copy(f[0:6], bcast)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // protocol: IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], op)
	copy(a[8:14], mac)
	copy(a[14:18], ip)
	if op == 2 {
		copy(a[18:24], bcast)
	}
	copy(a[24:28], ip)
	return f
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
