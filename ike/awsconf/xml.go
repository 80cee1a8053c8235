package awsconf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The XML vpn_connection document, as the cloud's API returns it (element names are the cloud's).
type xmlConnection struct {
	XMLName           xml.Name    `xml:"vpn_connection"`
	ID                string      `xml:"id,attr"`
	CustomerGatewayID string      `xml:"customer_gateway_id"`
	VPNGatewayID      string      `xml:"vpn_gateway_id,omitempty"`
	TransitGatewayID  string      `xml:"transit_gateway_id,omitempty"`
	Type              string      `xml:"vpn_connection_type"`
	Tunnels           []xmlTunnel `xml:"ipsec_tunnel"`
}

type xmlTunnel struct {
	CustomerGateway *xmlGateway `xml:"customer_gateway"`
	VPNGateway      *xmlGateway `xml:"vpn_gateway"`
	IKE             *xmlIKE     `xml:"ike"`
	IPsec           *xmlIPsec   `xml:"ipsec"`
}

type xmlGateway struct {
	Outside *xmlAddress `xml:"tunnel_outside_address"`
	Inside  *xmlAddress `xml:"tunnel_inside_address"`
	BGP     *xmlBGP     `xml:"bgp"`
}

type xmlAddress struct {
	IP          *string `xml:"ip_address"`
	NetworkMask string  `xml:"network_mask,omitempty"`
	NetworkCIDR *string `xml:"network_cidr"`
}

type xmlBGP struct {
	ASN      *string `xml:"asn"`
	HoldTime string  `xml:"hold_time,omitempty"`
}

type xmlIKE struct {
	Version        string  `xml:"version,omitempty"` // not in the cloud's documents; accepted if present
	Authentication *string `xml:"authentication_protocol"`
	Encryption     *string `xml:"encryption_protocol"`
	Lifetime       *string `xml:"lifetime"`
	PFS            *string `xml:"perfect_forward_secrecy"`
	Mode           string  `xml:"mode,omitempty"`
	PreSharedKey   *string `xml:"pre_shared_key"`
}

type xmlIPsec struct {
	Protocol       string  `xml:"protocol,omitempty"`
	Authentication *string `xml:"authentication_protocol"`
	Encryption     *string `xml:"encryption_protocol"`
	Lifetime       *string `xml:"lifetime"`
	PFS            *string `xml:"perfect_forward_secrecy"`
	Mode           string  `xml:"mode,omitempty"`
	ClearDFBit     string  `xml:"clear_df_bit,omitempty"`
	FragBeforeEnc  string  `xml:"fragmentation_before_encryption,omitempty"`
	TCPMSS         string  `xml:"tcp_mss_adjustment,omitempty"`
	DPD            *xmlDPD `xml:"dead_peer_detection"`
}

type xmlDPD struct {
	Interval string `xml:"interval,omitempty"`
	Retries  string `xml:"retries,omitempty"`
}

// ParseXML parses the XML vpn_connection document.
func ParseXML(data []byte) (*Connection, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxSize)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	// Find the root element first, to tell another XML document from a broken one.
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: an XML document without elements", ErrUnknownFormat)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: XML: %w", ErrInvalid, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "vpn_connection" {
				return nil, fmt.Errorf("%w: the root element is <%s>, not <vpn_connection>", ErrUnknownFormat, se.Name.Local)
			}
			var x xmlConnection
			if err := d.DecodeElement(&x, &se); err != nil {
				return nil, fmt.Errorf("%w: XML: %w", ErrInvalid, err)
			}
			return x.connection()
		}
	}
}

// xmlReader collects errors with element paths.
type xmlReader struct {
	errs []error
}

func (r *xmlReader) missing(path string) {
	r.errs = append(r.errs, fmt.Errorf("%w: element %s is missing", ErrInvalid, path))
}

func (r *xmlReader) bad(path, value, want string) {
	r.errs = append(r.errs, fmt.Errorf("%w: element %s = %q: %s", ErrInvalid, path, clip(value), want))
}

func (r *xmlReader) text(path string, p *string) (string, bool) {
	if p == nil {
		r.missing(path)
		return "", false
	}
	return strings.TrimSpace(*p), true
}

func (x *xmlConnection) connection() (*Connection, error) {
	c := &Connection{
		Format:            FormatXML,
		VPNConnectionID:   x.ID,
		VPNGatewayID:      x.VPNGatewayID,
		CustomerGatewayID: x.CustomerGatewayID,
	}
	if c.VPNGatewayID == "" {
		c.VPNGatewayID = x.TransitGatewayID
	}
	if len(x.Tunnels) == 0 {
		return nil, fmt.Errorf("%w: element vpn_connection/ipsec_tunnel is missing", ErrInvalid)
	}
	if len(x.Tunnels) > 2 {
		return nil, fmt.Errorf("%w: %d ipsec_tunnel elements; a cloud VPN connection has two", ErrInvalid, len(x.Tunnels))
	}
	var errs []error
	for i := range x.Tunnels {
		t, err := x.Tunnels[i].tunnel(fmt.Sprintf("vpn_connection/ipsec_tunnel[%d]", i+1))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.Tunnels = append(c.Tunnels, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func (xt *xmlTunnel) tunnel(base string) (Tunnel, error) {
	r := &xmlReader{}
	var t Tunnel
	cgw, vgw := xt.CustomerGateway, xt.VPNGateway
	if cgw == nil {
		r.missing(base + "/customer_gateway")
	}
	if vgw == nil {
		r.missing(base + "/vpn_gateway")
	}
	if cgw != nil {
		t.CustomerGatewayOutside = r.outside(base+"/customer_gateway", cgw)
		t.CustomerGatewayInside = r.inside(base+"/customer_gateway", cgw)
	}
	if vgw != nil {
		t.VPNGatewayOutside = r.outside(base+"/vpn_gateway", vgw)
		t.VPNGatewayInside = r.inside(base+"/vpn_gateway", vgw)
	}
	if cgw != nil && vgw != nil && (cgw.BGP != nil || vgw.BGP != nil) {
		b := &BGP{}
		if cgw.BGP == nil {
			r.missing(base + "/customer_gateway/bgp")
		} else {
			b.CustomerASN = r.asn(base+"/customer_gateway/bgp/asn", cgw.BGP.ASN)
		}
		if vgw.BGP == nil {
			r.missing(base + "/vpn_gateway/bgp")
		} else {
			b.CloudASN = r.asn(base+"/vpn_gateway/bgp/asn", vgw.BGP.ASN)
			if vgw.BGP.HoldTime != "" {
				if n, ok := atoi(strings.TrimSpace(vgw.BGP.HoldTime)); ok {
					b.HoldTime = time.Duration(n) * time.Second
				} else {
					r.bad(base+"/vpn_gateway/bgp/hold_time", vgw.BGP.HoldTime, "want seconds")
				}
			}
		}
		b.Neighbor = t.VPNGatewayInside.Addr()
		t.BGP = b
	} else if t.VPNGatewayInside.IsValid() {
		t.StaticNextHop = t.VPNGatewayInside.Addr()
	}

	t.IKEVersion = 1
	if xt.IKE == nil {
		r.missing(base + "/ike")
	} else {
		ike := xt.IKE
		p := base + "/ike"
		if ike.Version != "" {
			if n, ok := parseIKEVersion(ike.Version); ok {
				t.IKEVersion = n
			} else {
				r.bad(p+"/version", ike.Version, "want ikev1 or ikev2")
			}
		}
		if ike.PreSharedKey == nil {
			r.missing(p + "/pre_shared_key")
		} else if t.PreSharedKey = strings.TrimSpace(*ike.PreSharedKey); t.PreSharedKey == "" {
			r.errs = append(r.errs, fmt.Errorf("%w: element %s/pre_shared_key is empty", ErrInvalid, p))
		}
		r.phase(p, &t.Phase1, ike.Encryption, ike.Authentication, ike.Lifetime, ike.PFS, true)
		t.Phase1.Mode = "main"
		if ike.Mode != "" && squash(ike.Mode) != "main" {
			r.bad(p+"/mode", ike.Mode, "only main mode is supported")
		}
	}
	if xt.IPsec == nil {
		r.missing(base + "/ipsec")
	} else {
		ip := xt.IPsec
		p := base + "/ipsec"
		if ip.Protocol != "" && squash(ip.Protocol) != "esp" {
			r.bad(p+"/protocol", ip.Protocol, "only ESP is supported")
		}
		r.phase(p, &t.Phase2, ip.Encryption, ip.Authentication, ip.Lifetime, ip.PFS, false)
		t.Phase2.Mode = "tunnel"
		if ip.Mode != "" && squash(ip.Mode) != "tunnel" {
			r.bad(p+"/mode", ip.Mode, "only tunnel mode is supported")
		}
		if ip.TCPMSS != "" {
			if n, ok := atoi(strings.TrimSpace(ip.TCPMSS)); ok {
				t.TCPMSS = n
			} else {
				r.bad(p+"/tcp_mss_adjustment", ip.TCPMSS, "want a number")
			}
		}
		if ip.DPD != nil {
			if n, ok := atoi(strings.TrimSpace(ip.DPD.Interval)); ok {
				t.DPDInterval = time.Duration(n) * time.Second
			} else if ip.DPD.Interval != "" {
				r.bad(p+"/dead_peer_detection/interval", ip.DPD.Interval, "want seconds")
			}
			if n, ok := atoi(strings.TrimSpace(ip.DPD.Retries)); ok {
				t.DPDRetries = n
			} else if ip.DPD.Retries != "" {
				r.bad(p+"/dead_peer_detection/retries", ip.DPD.Retries, "want a number")
			}
		}
	}
	if len(r.errs) == 0 {
		if err := t.check(func(f string) string {
			if f == "customer inside" {
				return base + "/customer_gateway/tunnel_inside_address"
			}
			return base + "/vpn_gateway/tunnel_inside_address"
		}); err != nil {
			r.errs = append(r.errs, err)
		}
	}
	return t, errors.Join(r.errs...)
}

func (r *xmlReader) outside(base string, g *xmlGateway) netip.Addr {
	p := base + "/tunnel_outside_address"
	if g.Outside == nil {
		r.missing(p)
		return netip.Addr{}
	}
	s, ok := r.text(p+"/ip_address", g.Outside.IP)
	if !ok {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		r.bad(p+"/ip_address", s, "want an IPv4 address")
		return netip.Addr{}
	}
	return a
}

func (r *xmlReader) inside(base string, g *xmlGateway) netip.Prefix {
	p := base + "/tunnel_inside_address"
	if g.Inside == nil {
		r.missing(p)
		return netip.Prefix{}
	}
	s, ok := r.text(p+"/ip_address", g.Inside.IP)
	if !ok {
		return netip.Prefix{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		r.bad(p+"/ip_address", s, "want an IPv4 address")
		return netip.Prefix{}
	}
	bits := 30
	if g.Inside.NetworkCIDR != nil {
		n, err := strconv.Atoi(strings.TrimSpace(*g.Inside.NetworkCIDR))
		if err != nil || n < 0 || n > 32 {
			r.bad(p+"/network_cidr", *g.Inside.NetworkCIDR, "want a prefix length like 30")
			return netip.Prefix{}
		}
		bits = n
	}
	return netip.PrefixFrom(a, bits)
}

func (r *xmlReader) asn(path string, v *string) uint32 {
	s, ok := r.text(path, v)
	if !ok {
		return 0
	}
	n, ok := atoi(s)
	if !ok || n <= 0 || n > 4294967295 {
		r.bad(path, s, "want a number 1–4294967295")
		return 0
	}
	return uint32(n)
}

func (r *xmlReader) phase(base string, p *Phase, encr, integ, life, pfs *string, ike bool) {
	if s, ok := r.text(base+"/encryption_protocol", encr); ok {
		if e, ok := normEncryption(s); ok {
			p.Encryption = e
		} else {
			r.bad(base+"/encryption_protocol", s, "want aes-128-cbc, aes-256-cbc, aes-128-gcm-16 or aes-256-gcm-16")
		}
	}
	if integ != nil || !p.Encryption.AEAD() {
		if s, ok := r.text(base+"/authentication_protocol", integ); ok {
			if a, ok := normIntegrity(s); ok {
				p.Integrity = a
			} else {
				r.bad(base+"/authentication_protocol", s, "want sha1, sha2-256, sha2-384 or sha2-512")
			}
		}
	}
	if s, ok := r.text(base+"/lifetime", life); ok {
		if d, ok := parseSeconds(s); ok {
			p.Lifetime = d
		} else {
			r.bad(base+"/lifetime", s, "want seconds")
		}
	}
	if s, ok := r.text(base+"/perfect_forward_secrecy", pfs); ok {
		if !ike && (squash(s) == "none" || squash(s) == "disabled") {
			return
		}
		if g, ok := normGroup(s); ok {
			p.DHGroup = g
		} else {
			r.bad(base+"/perfect_forward_secrecy", s, "want group2, group14, …")
		}
	}
}
