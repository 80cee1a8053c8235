package lab

import (
	"net"
	"path/filepath"

	"github.com/vishvananda/netlink"
)

// DHCPServer serves DHCP on the namespace's interface ifname with dnsmasq (no DNS), as the network a box is
// plugged into does: it hands out the addresses from first to last of the interface's network (give one address
// to make the box's predictable), with the namespace's own address as router and name server, on leases of
// dnsmasq's shortest time (2 minutes). The interface must already have its address.
func (n *Netns) DHCPServer(ifname, first, last string) *Process {
	n.lab.t.Helper()
	Require(n.lab.t, "dnsmasq")
	link, err := n.handle.LinkByName(ifname)
	if err != nil {
		n.lab.t.Fatalf("lab: %s: link %s: %v", n.Name, ifname, err)
	}
	addrs, err := n.handle.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		n.lab.t.Fatalf("lab: %s in %s has no IPv4 address to serve DHCP from (%v)", ifname, n.Name, err)
	}
	self := addrs[0].IP.String()
	return n.Start("dnsmasq", "--keep-in-foreground", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface="+ifname, "--bind-interfaces", "--no-ping", "--log-dhcp",
		"--dhcp-range="+first+","+last+","+net.IP(addrs[0].Mask).String()+",2m",
		"--dhcp-option=option:router,"+self, "--dhcp-option=option:dns-server,"+self,
		"--dhcp-option=option:domain-name,lab.example",
		"--dhcp-leasefile="+filepath.Join(n.lab.t.TempDir(), "leases"), "--pid-file=")
}
