package awsconf

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"

	"toride/ike"
)

// Names the files use for the normalized algorithm names (phase 2 integrity is written as HMAC).
var (
	fileEncryption = map[ike.Encryption]string{
		ike.AES128: "aes-128-cbc", ike.AES256: "aes-256-cbc", ike.AES128GCM16: "aes-128-gcm-16", ike.AES256GCM16: "aes-256-gcm-16",
	}
	fileIntegrity = map[ike.Integrity]string{ike.SHA1: "sha1", ike.SHA2256: "sha2-256", ike.SHA2384: "sha2-384", ike.SHA2512: "sha2-512"}
	fileHMAC      = map[ike.Integrity]string{
		ike.SHA1: "hmac-sha1-96", ike.SHA2256: "hmac-sha2-256-128", ike.SHA2384: "hmac-sha2-384-192", ike.SHA2512: "hmac-sha2-512-256",
	}
)

// MarshalGeneric writes c in the Generic text format (the layout the cloud's generator uses). Parsing the result
// gives c back; tests and fuzzing rely on that.
func MarshalGeneric(c *Connection) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `Amazon Web Services
Virtual Private Cloud

VPN Connection Configuration
================================================================================
Your VPN Connection ID                   : %s
Your Virtual Private Gateway ID          : %s
Your Customer Gateway ID                 : %s

A VPN Connection consists of a pair of IPSec tunnel security associations (SAs).
`, c.VPNConnectionID, c.VPNGatewayID, c.CustomerGatewayID)
	for i, t := range c.Tunnels {
		fmt.Fprintf(&b, `
IPSec Tunnel #%d
================================================================================
#1: Internet Key Exchange Configuration

Configure the IKE SA as follows:
  - IKE version              : IKEv%d
  - Authentication Method    : Pre-Shared Key
  - Pre-Shared Key           : %s
`, i+1, t.IKEVersion, t.PreSharedKey)
		if t.Phase1.Integrity != "" {
			fmt.Fprintf(&b, "  - Authentication Algorithm : %s\n", fileIntegrity[t.Phase1.Integrity])
		}
		fmt.Fprintf(&b, `  - Encryption Algorithm     : %s
  - Lifetime                 : %d seconds
  - Phase 1 Negotiation Mode : main
  - Diffie-Hellman           : Group %d

#2: IPSec Configuration

Configure the IPSec SA as follows:
  - Protocol                 : esp
`, fileEncryption[t.Phase1.Encryption], int64(t.Phase1.Lifetime.Seconds()), t.Phase1.DHGroup)
		if t.Phase2.Integrity != "" {
			fmt.Fprintf(&b, "  - Authentication Algorithm : %s\n", fileHMAC[t.Phase2.Integrity])
		}
		pfs := "none"
		if t.Phase2.DHGroup != 0 {
			pfs = fmt.Sprintf("Diffie-Hellman Group %d", t.Phase2.DHGroup)
		}
		fmt.Fprintf(&b, `  - Encryption Algorithm     : %s
  - Lifetime                 : %d seconds
  - Mode                     : tunnel
  - Perfect Forward Secrecy  : %s
`, fileEncryption[t.Phase2.Encryption], int64(t.Phase2.Lifetime.Seconds()), pfs)
		if t.DPDInterval > 0 {
			fmt.Fprintf(&b, "  - DPD Interval             : %d\n", int64(t.DPDInterval.Seconds()))
		}
		if t.DPDRetries > 0 {
			fmt.Fprintf(&b, "  - DPD Retries              : %d\n", t.DPDRetries)
		}
		if t.TCPMSS > 0 {
			fmt.Fprintf(&b, "  - TCP MSS Adjustment       : %d bytes\n", t.TCPMSS)
		}
		fmt.Fprintf(&b, `
#3: Tunnel Interface Configuration

Outside IP Addresses:
  - Customer Gateway                    : %s
  - Virtual Private Gateway             : %s

Inside IP Addresses
  - Customer Gateway                    : %s
  - Virtual Private Gateway             : %s
`, t.CustomerGatewayOutside, t.VPNGatewayOutside, t.CustomerGatewayInside, t.VPNGatewayInside)
		if t.MTU > 0 {
			fmt.Fprintf(&b, "\nConfigure your tunnel to fragment at the optimal size:\n  - Tunnel interface MTU     : %d bytes\n", t.MTU)
		}
		switch {
		case t.BGP != nil:
			fmt.Fprintf(&b, `
#4: Border Gateway Protocol (BGP) Configuration:

BGP Configuration Options:
  - Customer Gateway ASN                  : %d
  - Virtual Private  Gateway ASN          : %d
  - Neighbor IP Address                   : %s
`, t.BGP.CustomerASN, t.BGP.CloudASN, t.BGP.Neighbor)
			if t.BGP.HoldTime > 0 {
				fmt.Fprintf(&b, "  - Neighbor Hold Time                    : %d\n", int64(t.BGP.HoldTime.Seconds()))
			}
		case t.StaticNextHop.IsValid():
			fmt.Fprintf(&b, `
#4: Static Routing Configuration:

Static Route Configuration Options:

  - Next hop       : %s
`, t.StaticNextHop)
		}
	}
	return b.Bytes()
}

// MarshalXML writes c as a vpn_connection document. Parsing the result gives c back.
func MarshalXML(c *Connection) ([]byte, error) {
	str := func(s string) *string { return &s }
	x := xmlConnection{ID: c.VPNConnectionID, CustomerGatewayID: c.CustomerGatewayID, VPNGatewayID: c.VPNGatewayID, Type: "ipsec.1"}
	for _, t := range c.Tunnels {
		xt := xmlTunnel{
			CustomerGateway: &xmlGateway{
				Outside: &xmlAddress{IP: str(t.CustomerGatewayOutside.String())},
				Inside: &xmlAddress{IP: str(t.CustomerGatewayInside.Addr().String()),
					NetworkCIDR: str(strconv.Itoa(t.CustomerGatewayInside.Bits()))},
			},
			VPNGateway: &xmlGateway{
				Outside: &xmlAddress{IP: str(t.VPNGatewayOutside.String())},
				Inside: &xmlAddress{IP: str(t.VPNGatewayInside.Addr().String()),
					NetworkCIDR: str(strconv.Itoa(t.VPNGatewayInside.Bits()))},
			},
			IKE: &xmlIKE{
				Encryption:   str(fileEncryption[t.Phase1.Encryption]),
				Lifetime:     str(strconv.FormatInt(int64(t.Phase1.Lifetime.Seconds()), 10)),
				PFS:          str(fmt.Sprintf("group%d", t.Phase1.DHGroup)),
				Mode:         "main",
				PreSharedKey: str(t.PreSharedKey),
			},
			IPsec: &xmlIPsec{
				Protocol:   "esp",
				Encryption: str(fileEncryption[t.Phase2.Encryption]),
				Lifetime:   str(strconv.FormatInt(int64(t.Phase2.Lifetime.Seconds()), 10)),
				Mode:       "tunnel",
			},
		}
		if t.IKEVersion != 1 {
			xt.IKE.Version = fmt.Sprintf("ikev%d", t.IKEVersion)
		}
		if t.Phase1.Integrity != "" {
			xt.IKE.Authentication = str(fileIntegrity[t.Phase1.Integrity])
		}
		if t.Phase2.Integrity != "" {
			xt.IPsec.Authentication = str(fileHMAC[t.Phase2.Integrity])
		}
		if t.Phase2.DHGroup != 0 {
			xt.IPsec.PFS = str(fmt.Sprintf("group%d", t.Phase2.DHGroup))
		} else {
			xt.IPsec.PFS = str("none")
		}
		if t.TCPMSS > 0 {
			xt.IPsec.TCPMSS = strconv.Itoa(t.TCPMSS)
		}
		if t.DPDInterval > 0 || t.DPDRetries > 0 {
			xt.IPsec.DPD = &xmlDPD{}
			if t.DPDInterval > 0 {
				xt.IPsec.DPD.Interval = strconv.FormatInt(int64(t.DPDInterval.Seconds()), 10)
			}
			if t.DPDRetries > 0 {
				xt.IPsec.DPD.Retries = strconv.Itoa(t.DPDRetries)
			}
		}
		if t.BGP != nil {
			xt.CustomerGateway.BGP = &xmlBGP{ASN: str(strconv.FormatUint(uint64(t.BGP.CustomerASN), 10))}
			xt.VPNGateway.BGP = &xmlBGP{ASN: str(strconv.FormatUint(uint64(t.BGP.CloudASN), 10))}
			if t.BGP.HoldTime > 0 {
				xt.VPNGateway.BGP.HoldTime = strconv.FormatInt(int64(t.BGP.HoldTime.Seconds()), 10)
			}
		}
		x.Tunnels = append(x.Tunnels, xt)
	}
	out, err := xml.MarshalIndent(x, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return append([]byte(xml.Header), out...), nil
}
