package tests

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"toride/ike/awsconf"
	"toride/tests/cloudlab"
	"toride/tests/lab"
	"toride/tests/toridetest"
)

// TestIPsecESPOnTheWAN reads the appliance's WAN link. While the tunnels come up, IKE starts on UDP 500 and moves
// to 4500 behind the non-ESP marker. Then, while the site LAN pings the cloud LAN, every ESP packet is in UDP
// 4500 (the gateways run kernel-libipsec, which always encapsulates, and charon says so) and carries a SPI the
// gateway's own charon reports for its tunnel, in the right direction; the LAN's pings leave over the active
// tunnel's SA, come back over the SA of the gateway the cloud routes through, and never cross the WAN in the
// clear.
func TestIPsecESPOnTheWAN(t *testing.T) {
	tp := cloudlab.New(t, cloudlab.Options{})
	d := toridetest.Start(t, tp.App, t.TempDir())
	bringUp := tp.App.Capture("wan0")
	importAndCommit(t, d, tp, labFile(t, awsconf.FormatGeneric, 2))
	bringUp.Close()
	for _, gw := range cloudlab.GWOutside {
		for _, port := range []uint16{lab.PortIKE, lab.PortNATT} {
			for _, outgoing := range []bool{true, false} {
				if _, err := bringUp.Wait(0, func(p lab.Packet) bool {
					peer := p.Src
					if p.Outgoing {
						peer = p.Dst
					}
					return p.IKE && p.Outgoing == outgoing && peer.String() == gw && p.SrcPort == port && p.DstPort == port
				}); err != nil {
					t.Errorf("no IKE on UDP %d with %s (from the appliance: %v) while the tunnels came up", port, gw, outgoing)
				}
			}
		}
	}
	st := waitTunnels(t, d, tp, "an active tunnel", func(st ipsecStatus) error {
		if err := bothTunnelsUp(st); err != nil {
			return err
		}
		for _, tn := range st.Connections[0].Tunnels {
			if tn.Active {
				return nil
			}
		}
		return fmt.Errorf("no active tunnel")
	})
	active := 0
	if st.Connections[0].Tunnels[1].Active {
		active = 1
	}
	const returning = 0 // the cloud routes the site's traffic back through gateway 1 (cloudlab)

	before := [2]gatewaySAs{gatewaySPIs(t, tp.GWs[0]), gatewaySPIs(t, tp.GWs[1])}
	wan := tp.App.Capture("wan0")
	const pings = 20
	if _, err := tp.Site.Run("ping", "-n", "-q", "-c", strconv.Itoa(pings), "-i", "0.05", "-W", "2", cloudlab.CloudHost); err != nil {
		tp.Diagnose(t)
		t.Fatalf("LAN to LAN: %v", err)
	}
	// The other tunnel's probe (one a second) shows that tunnel's SAs on the wire too.
	idle := 1 - active
	if _, err := wan.Wait(3*time.Second, func(p lab.Packet) bool {
		return p.Outgoing && p.ESP != nil && p.Dst.String() == cloudlab.GWOutside[idle]
	}); err != nil {
		t.Fatalf("no ESP to the idle tunnel's gateway: %v", err)
	}
	wan.Close()
	after := [2]gatewaySAs{gatewaySPIs(t, tp.GWs[0]), gatewaySPIs(t, tp.GWs[1])}

	// The SPIs each gateway reported before or after the traffic (a rekey in between would change them).
	var in, out [2]map[uint32]bool
	for i := range 2 {
		in[i], out[i] = map[uint32]bool{}, map[uint32]bool{}
		for _, sas := range []gatewaySAs{before[i], after[i]} {
			if len(sas.children) == 0 {
				t.Fatalf("gateway %d's charon reports no installed CHILD_SA:\n%s", i+1, sas.raw)
			}
			for _, c := range sas.children {
				if !c.encap {
					t.Errorf("gateway %d's charon reports CHILD_SA %08x/%08x without UDP encapsulation", i+1, c.in, c.out)
				}
				in[i][c.in], out[i][c.out] = true, true
			}
		}
	}
	t.Logf("gateway SPIs (in/out): 1 %v/%v, 2 %v/%v; active tunnel %d", keys(in[0]), keys(out[0]), keys(in[1]), keys(out[1]), active+1)

	var toGW, fromGW [2]int // ESP packets carrying the gateway's SPIs, per gateway
	packets := wan.Packets()
	for _, p := range packets {
		if p.ICMP != nil && (p.Src.String() == cloudlab.SiteHost || p.Dst.String() == cloudlab.SiteHost) {
			t.Errorf("the LAN's traffic crossed the WAN in the clear: %v", p)
		}
		if p.ESP == nil {
			continue
		}
		if !p.ESP.UDPEncapsulated || p.SrcPort != 4500 || p.DstPort != 4500 {
			t.Errorf("ESP not in UDP 4500 both ways: %v", p)
		}
		gw, local := p.Dst.String(), p.Src.String()
		if !p.Outgoing {
			gw, local = local, gw
		}
		i := gatewayIndex(gw)
		switch {
		case local != cloudlab.AppWAN || i < 0:
			t.Errorf("ESP between addresses of no tunnel: %v", p)
		case p.Outgoing && in[i][p.ESP.SPI]:
			toGW[i]++
		case !p.Outgoing && out[i][p.ESP.SPI]:
			fromGW[i]++
		default:
			t.Errorf("ESP with a SPI gateway %d's charon does not report for that direction: %v", i+1, p)
		}
	}
	t.Logf("%d packets on the WAN; ESP to gateway 1/2: %d/%d, from gateway 1/2: %d/%d", len(packets), toGW[0], toGW[1], fromGW[0], fromGW[1])
	if toGW[active] < pings || fromGW[returning] < pings {
		t.Errorf("%d pings answered, but only %d ESP packets out to the active gateway %d and %d back from gateway %d",
			pings, toGW[active], active+1, fromGW[returning], returning+1)
	}
	if toGW[idle] == 0 {
		t.Errorf("no ESP out over the idle tunnel %d, whose probe was seen", idle+1)
	}
	if wan.Dropped() > 0 {
		t.Errorf("the capture dropped %d frames", wan.Dropped())
	}
}

// gatewaySAs are the installed CHILD_SAs a gateway's charon reports.
type gatewaySAs struct {
	children []childSA
	raw      string
}

type childSA struct {
	in, out uint32 // the gateway's inbound and outbound SPIs
	encap   bool
}

// In swanctl's raw form each CHILD_SA is a section of its own, the only kind that starts with its name.
var (
	childSAPattern = regexp.MustCompile(`\{(name=[^{}]*)\}`)
	rawField       = regexp.MustCompile(`(?:^|\s)(state|encap|spi-in|spi-out)=(\S+)`)
)

// gatewaySPIs asks the gateway's charon (swanctl over its VICI socket, as an operator would) for its CHILD_SAs.
func gatewaySPIs(t *testing.T, g *cloudlab.Gateway) gatewaySAs {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "swanctl", "--list-sas", "--raw", "--uri", "unix://"+g.Socket()).CombinedOutput()
	if err != nil {
		t.Fatalf("swanctl --list-sas: %v\n%s", err, out)
	}
	sas := gatewaySAs{raw: string(out)}
	for _, m := range childSAPattern.FindAllStringSubmatch(string(out), -1) {
		fields := map[string]string{}
		for _, f := range rawField.FindAllStringSubmatch(m[1], -1) {
			fields[f[1]] = f[2]
		}
		if fields["state"] != "INSTALLED" {
			continue
		}
		spiIn, err1 := strconv.ParseUint(fields["spi-in"], 16, 32)
		spiOut, err2 := strconv.ParseUint(fields["spi-out"], 16, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("swanctl's SPIs %q/%q:\n%s", fields["spi-in"], fields["spi-out"], out)
		}
		sas.children = append(sas.children, childSA{in: uint32(spiIn), out: uint32(spiOut), encap: fields["encap"] == "yes"})
	}
	return sas
}

func gatewayIndex(addr string) int {
	for i, gw := range cloudlab.GWOutside {
		if gw == addr {
			return i
		}
	}
	return -1
}

func keys(m map[uint32]bool) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%08x", k))
	}
	return out
}
