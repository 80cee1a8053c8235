package cloudlab

import (
	"fmt"
	"net/netip"
	"testing"

	"toride/tests/frr"
	"toride/tests/lab"
)

// The lab's BGP numbers: the cloud's ASN (the cloud's default) and the site's (the configuration file's).
const (
	CloudASN = 64512
	SiteASN  = 65000
	CloudLAN = "10.2.0.0/24"
)

// BGPSpeaker is one gateway's bgpd (FRR), standing for the cloud's BGP speaker of one tunnel. It runs without
// zebra: the gateway's charon (kernel-libipsec, 0.0.0.0/0) already sends everything but the cloud LAN into the
// tunnel, so nothing learned needs installing; what counts is what bgpd announces and what it hears.
type BGPSpeaker struct {
	*frr.Daemon
	Peer netip.Addr // the appliance's inside address of this tunnel
}

func startBGP(t testing.TB, ns *lab.Netns, i int) *BGPSpeaker {
	t.Helper()
	inside := netip.MustParsePrefix(GWInside[i])
	far, ours := inside.Addr().Next(), inside.Addr().Next().Next()
	conf := fmt.Sprintf(`frr defaults traditional
hostname gw%[1]d
log stdout informational
!
router bgp %[2]d
 bgp router-id %[3]s
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor %[4]s remote-as %[5]d
 neighbor %[4]s update-source %[3]s
 neighbor %[4]s timers 3 9
 neighbor %[4]s timers connect 2
 address-family ipv4 unicast
  network %[6]s
 exit-address-family
!
`, i+1, CloudASN, far, ours, SiteASN, CloudLAN)
	return &BGPSpeaker{Daemon: frr.Start(t, ns, conf, frr.Options{}), Peer: ours}
}

// State is bgpd's state of its session with the appliance ("Established", "Active", ...).
func (b *BGPSpeaker) State() string { return b.Daemon.State(b.Peer) }

// Received returns the prefixes bgpd has from the appliance, with their AS paths.
func (b *BGPSpeaker) Received() (map[string]string, error) { return b.Daemon.Received(b.Peer) }
