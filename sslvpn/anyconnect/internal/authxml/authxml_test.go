package authxml

import (
	"encoding/xml"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// openconnect 9.01's auth-reply, as captured in the interop tests.
const openconnectReply = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="auth-reply" aggregate-auth-version="2"><version who="vpn">v9.01-3</version><device-id>linux-64</device-id><capabilities><auth-method>single-sign-on-v2</auth-method><auth-method>single-sign-on-external-browser</auth-method></capabilities><opaque is-for="sg">
<tunnel-group>staff</tunnel-group>
<group-alias>staff</group-alias>
<aggauth-handle>dba2dc6f0c9a1cc0ec6aa0a69dbdf0a5</aggauth-handle>
</opaque><auth><username>alice</username><password>alice-pw</password></auth><group-select>eng</group-select></config-auth>`

// A Cisco AnyConnect client's init, with the elements it sends that the gateway ignores.
const ciscoInit = `<?xml version="1.0" encoding="UTF-8"?>
<config-auth client="vpn" type="init" aggregate-auth-version="2">
<version who="vpn">4.10.07073</version>
<device-id computer-name="PC" device-type="VMware" platform-version="10.0.19045" unique-id="ABC">win</device-id>
<mac-address-list><mac-address public-interface="true">00-0c-29-aa-bb-cc</mac-address></mac-address-list>
<group-select>Sales</group-select>
<group-access>https://vpn.example.com/sales</group-access>
<capabilities><auth-method>single-sign-on-v2</auth-method><auth-method>multiple-cert</auth-method></capabilities>
</config-auth>`

func TestParse(t *testing.T) {
	r, err := Parse([]byte(openconnectReply))
	if err != nil {
		t.Fatal(err)
	}
	want := &Request{Type: "auth-reply", AggregateAuthVersion: "2", Version: "v9.01-3", DeviceID: "linux-64", GroupSelect: "eng",
		TunnelGroup: "staff", AuthHandle: "dba2dc6f0c9a1cc0ec6aa0a69dbdf0a5",
		Auth: []Field{{"username", "alice"}, {"password", "alice-pw"}}}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("Parse (-got +want):\n-%+v\n+%+v", r, want)
	}
	if v, ok := r.AuthValue("answer", "password"); !ok || v != "alice-pw" {
		t.Errorf("AuthValue = %q %v", v, ok)
	}
	c, err := Parse([]byte(ciscoInit))
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != TypeInit || c.DeviceID != "win" || c.GroupSelect != "Sales" || c.GroupAccess != "https://vpn.example.com/sales" {
		t.Errorf("Cisco init: %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"", "<config-auth>", "<other type='init'/>", "<config-auth client='vpn'/>", "not xml",
		strings.Repeat("<a>", 100) + "x",
		// encoding/xml expands no entity but the predefined ones: no XXE, no billion laughs.
		`<!DOCTYPE x [<!ENTITY e "boom">]><config-auth type="init"><x>&e;</x></config-auth>`,
		string(make([]byte, MaxDocument+1)),
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%.40q) = %v, want ErrMalformed", in, err)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	r := &Request{Type: TypeAuthReply, AggregateAuthVersion: "2", Version: "v9.01", DeviceID: "linux-64", GroupSelect: "a&b",
		AuthHandle: "h", TunnelGroup: "g<", Auth: []Field{{"username", " spaced "}, {"answer", "12<34>"}}, SessionToken: "T",
		ClientCertFail: true, HostScanToken: "hs"}
	got, err := Parse(r.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip (-got +want):\n-%+v\n+%+v", got, r)
	}
}

// parseDoc reads a rendered document with encoding/xml into a generic tree.
type node struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Text    string     `xml:",chardata"`
	Nodes   []node     `xml:",any"`
}

func (n *node) find(path ...string) *node {
	if len(path) == 0 {
		return n
	}
	for i := range n.Nodes {
		if n.Nodes[i].XMLName.Local == path[0] {
			return n.Nodes[i].find(path[1:]...)
		}
	}
	return nil
}

func (n *node) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func TestFormRender(t *testing.T) {
	f := &Form{ID: "main", Title: "VPN", Message: "Please log in", Error: `bad "thing" <here>`, Banner: "b&b",
		Inputs: []Input{{"text", "username", "Username:"}, {"password", "password", "Password:"}},
		Groups: []Option{{Name: "sales", Label: "Sales </select><input type='x'>", Selected: true}, {Name: "eng", Label: "Engineering"}},
		Opaque: Opaque{TunnelGroup: "sales", GroupAlias: "Sales", AuthHandle: "h1"}}
	var root node
	if err := xml.Unmarshal(f.Render(), &root); err != nil {
		t.Fatalf("rendered form is not XML: %v\n%s", err, f.Render())
	}
	if root.attr("type") != "auth-request" || root.find("opaque", "aggauth-handle").Text != "h1" {
		t.Errorf("envelope: %+v", root)
	}
	auth := root.find("auth")
	if auth.attr("id") != "main" || auth.find("error").Text != `bad "thing" <here>` || auth.find("banner").Text != "b&b" {
		t.Errorf("auth: %+v", auth)
	}
	form := auth.find("form")
	var names []string
	for _, in := range form.Nodes {
		names = append(names, in.XMLName.Local+":"+in.attr("name"))
	}
	if strings.Join(names, ",") != "input:username,input:password,select:group_list" {
		t.Errorf("form fields: %v", names)
	}
	sel := form.find("select")
	if len(sel.Nodes) != 2 || sel.Nodes[0].Text != "Sales </select><input type='x'>" || sel.Nodes[0].attr("selected") != "true" ||
		sel.Nodes[1].attr("value") != "eng" || sel.Nodes[1].attr("selected") != "" {
		t.Errorf("select: %+v", sel)
	}
}

func TestSuccessRender(t *testing.T) {
	s := &Success{SessionID: "7", SessionToken: "TOKEN", TunnelGroup: "sales", ServerCertHash: "ABCD",
		Profile: &Profile{URI: "/profiles/sales.xml", SHA1: "0123"}}
	var root node
	if err := xml.Unmarshal(s.Render(), &root); err != nil {
		t.Fatal(err)
	}
	if root.attr("type") != "complete" || root.find("session-token").Text != "TOKEN" || root.find("auth").attr("id") != "success" ||
		root.find("config", "vpn-base-config", "server-cert-hash").Text != "ABCD" ||
		root.find("config", "vpn-profile-manifest", "vpn", "file", "uri").Text != "/profiles/sales.xml" ||
		root.find("config", "vpn-profile-manifest", "vpn", "file", "hash").Text != "0123" {
		t.Fatalf("success document:\n%s", s.Render())
	}
	if err := xml.Unmarshal(Logout(), &root); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(openconnectReply))
	f.Add([]byte(ciscoInit))
	f.Add([]byte(`<config-auth client="vpn" type="logout"><session-token>T</session-token></config-auth>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		r.AuthValue("username", "password")
		again, err := Parse(r.Marshal())
		if err != nil {
			t.Fatalf("re-parsing %q: %v", r.Marshal(), err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip (-got +want):\n-%+v\n+%+v", again, r)
		}
	})
}
