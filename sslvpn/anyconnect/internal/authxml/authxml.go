// Package authxml is the XML of AnyConnect's aggregate authentication: the config-auth documents a client posts
// (init, auth-reply, logout) and the ones the gateway answers with (an auth-request form, success, logout).
//
// Parse accepts what openconnect and Cisco's clients send and ignores what the gateway does not use (host scan,
// capabilities, MAC addresses). Rendering escapes every text and attribute, so a label or message from the
// configuration or a backend can never change the document's structure.
//
// Functions are safe for concurrent use.
package authxml

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrMalformed is a document that is not a config-auth request.
var ErrMalformed = errors.New("authxml: malformed config-auth document")

// MaxDocument is the largest document Parse reads.
const MaxDocument = 64 << 10

// Request types a client sends.
const (
	TypeInit      = "init"
	TypeAuthReply = "auth-reply"
	TypeLogout    = "logout"
)

// Field is one answer in the client's <auth> element: <username>joe</username> is {"username", "joe"}.
type Field struct{ Name, Value string }

// Request is a client's config-auth document.
type Request struct {
	Type                 string // TypeInit, TypeAuthReply, TypeLogout, or what the client sent
	AggregateAuthVersion string
	Version              string // the client's version, e.g. "v9.01"
	DeviceID             string // e.g. "linux-64", "win"
	GroupSelect          string // the connection profile the client asks for
	GroupAccess          string // the URL the user typed, e.g. "https://vpn.example.com/sales"
	// From the <opaque> element the client copies back from the gateway's last answer.
	TunnelGroup string
	AuthHandle  string
	// Auth holds the <auth> element's children, in order.
	Auth           []Field
	SessionToken   string
	ClientCertFail bool
	HostScanToken  string
}

// AuthValue returns the value of the first answer with one of the names.
func (r *Request) AuthValue(names ...string) (string, bool) {
	for _, n := range names {
		for _, f := range r.Auth {
			if f.Name == n {
				return f.Value, true
			}
		}
	}
	return "", false
}

type textElem struct {
	Who   string `xml:"who,attr,omitempty"`
	Value string `xml:",chardata"`
}

type anyElem struct {
	XMLName xml.Name
	Value   string `xml:",chardata"`
}

type wireRequest struct {
	XMLName        xml.Name  `xml:"config-auth"`
	Client         string    `xml:"client,attr,omitempty"`
	Type           string    `xml:"type,attr"`
	AggAuthVersion string    `xml:"aggregate-auth-version,attr,omitempty"`
	Version        *textElem `xml:"version"`
	DeviceID       *textElem `xml:"device-id"`
	GroupSelect    *string   `xml:"group-select"`
	GroupAccess    *string   `xml:"group-access"`
	Opaque         *struct {
		IsFor          string `xml:"is-for,attr,omitempty"`
		TunnelGroup    string `xml:"tunnel-group,omitempty"`
		AggAuthHandle  string `xml:"aggauth-handle,omitempty"`
		AuthHandle     string `xml:"auth-handle,omitempty"`
		GroupAlias     string `xml:"group-alias,omitempty"`
		ConfigHash     string `xml:"config-hash,omitempty"`
		AuthMethodList string `xml:"auth-method,omitempty"`
	} `xml:"opaque"`
	Auth *struct {
		Fields []anyElem `xml:",any"`
	} `xml:"auth"`
	SessionToken   *string   `xml:"session-token"`
	ClientCertFail *struct{} `xml:"client-cert-fail"`
	HostScanToken  *string   `xml:"host-scan-token"`
}

// Parse reads a client's config-auth document.
func Parse(b []byte) (*Request, error) {
	if len(b) > MaxDocument {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	var w wireRequest
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	// Clients declare UTF-8; anything else is read as is rather than refused (the fields are ASCII in practice).
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	if err := d.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	r := &Request{Type: strings.TrimSpace(w.Type), AggregateAuthVersion: w.AggAuthVersion, ClientCertFail: w.ClientCertFail != nil}
	if w.Version != nil {
		r.Version = strings.TrimSpace(w.Version.Value)
	}
	if w.DeviceID != nil {
		r.DeviceID = strings.TrimSpace(w.DeviceID.Value)
	}
	if w.GroupSelect != nil {
		r.GroupSelect = strings.TrimSpace(*w.GroupSelect)
	}
	if w.GroupAccess != nil {
		r.GroupAccess = strings.TrimSpace(*w.GroupAccess)
	}
	if w.Opaque != nil {
		r.TunnelGroup = strings.TrimSpace(w.Opaque.TunnelGroup)
		r.AuthHandle = strings.TrimSpace(w.Opaque.AggAuthHandle)
		if r.AuthHandle == "" {
			r.AuthHandle = strings.TrimSpace(w.Opaque.AuthHandle)
		}
	}
	if w.Auth != nil {
		for _, f := range w.Auth.Fields {
			// Answers are taken as typed: a password may begin or end with a space.
			r.Auth = append(r.Auth, Field{Name: f.XMLName.Local, Value: f.Value})
		}
	}
	if w.SessionToken != nil {
		r.SessionToken = strings.TrimSpace(*w.SessionToken)
	}
	if w.HostScanToken != nil {
		r.HostScanToken = strings.TrimSpace(*w.HostScanToken)
	}
	if r.Type == "" {
		return nil, fmt.Errorf("%w: no type", ErrMalformed)
	}
	return r, nil
}

// Marshal writes r as a client would (openconnect's layout). Parse(r.Marshal()) returns r again: the fuzz
// target checks it, and tests use it as their client.
func (r *Request) Marshal() []byte {
	var w writer
	w.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.open("config-auth", "client", "vpn", "type", r.Type, "aggregate-auth-version", r.AggregateAuthVersion)
	w.elem("version", r.Version, "who", "vpn")
	w.elem("device-id", r.DeviceID)
	if r.TunnelGroup != "" || r.AuthHandle != "" {
		w.open("opaque", "is-for", "sg")
		w.elem("tunnel-group", r.TunnelGroup)
		w.elem("aggauth-handle", r.AuthHandle)
		w.close("opaque")
	}
	w.elem("group-access", r.GroupAccess)
	w.elem("group-select", r.GroupSelect)
	if len(r.Auth) > 0 {
		w.open("auth")
		for _, f := range r.Auth {
			w.always(f.Name, f.Value)
		}
		w.close("auth")
	}
	w.elem("session-token", r.SessionToken)
	if r.ClientCertFail {
		w.raw("<client-cert-fail/>\n")
	}
	w.elem("host-scan-token", r.HostScanToken)
	w.close("config-auth")
	return w.b.Bytes()
}

// Input is one input of a form.
type Input struct {
	Type  string // "text" or "password"
	Name  string // "username", "password", "answer", ...
	Label string
}

// Option is one connection profile in the group list.
type Option struct {
	Name     string // sent back by the client in group-select
	Label    string // shown to the user; openconnect's --authgroup matches it
	Selected bool
}

// Opaque is what the gateway asks the client to copy back verbatim in its next request.
type Opaque struct {
	TunnelGroup string
	GroupAlias  string
	AuthHandle  string
	ConfigHash  string
}

// Form is an auth-request: a form the client shows and posts back.
type Form struct {
	ID      string // "main" for the login, "challenge" for a one-time password
	Title   string
	Message string
	Error   string
	Banner  string
	Action  string // where the client posts; "" for "/"
	Inputs  []Input
	// Groups, when not empty, is rendered as the group_list select; GroupLabel is its label.
	Groups     []Option
	GroupLabel string
	Opaque     Opaque
}

// Render writes the form's document.
func (f *Form) Render() []byte {
	var w writer
	w.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.open("config-auth", "client", "vpn", "type", "auth-request", "aggregate-auth-version", "2")
	w.version()
	w.opaque(f.Opaque)
	w.open("auth", "id", f.ID)
	w.elem("title", f.Title)
	w.elem("message", f.Message)
	w.elem("banner", f.Banner)
	w.elem("error", f.Error, "id", errID(f.Error))
	action := f.Action
	if action == "" {
		action = "/"
	}
	w.open("form", "method", "post", "action", action)
	for _, in := range f.Inputs {
		w.empty("input", "type", in.Type, "name", in.Name, "label", in.Label)
	}
	if len(f.Groups) > 0 {
		label := f.GroupLabel
		if label == "" {
			label = "GROUP:"
		}
		w.open("select", "name", "group_list", "label", label)
		for _, o := range f.Groups {
			sel := ""
			if o.Selected {
				sel = "true"
			}
			w.elemAttrs("option", o.Label, "value", o.Name, "selected", sel)
		}
		w.close("select")
	}
	w.close("form")
	w.close("auth")
	w.close("config-auth")
	return w.b.Bytes()
}

func errID(msg string) string {
	if msg == "" {
		return ""
	}
	return "general"
}

// Profile locates the connection profile's XML for the client's downloader.
type Profile struct {
	URI  string // e.g. "/profiles/sales.xml"
	SHA1 string // lower-case hex SHA-1 of the XML
}

// Success is the answer to a completed login.
type Success struct {
	SessionID      string
	SessionToken   string // the webvpn cookie
	Message        string
	Banner         string
	TunnelGroup    string
	ServerCertHash string // upper-case hex SHA-1 of the server certificate's DER
	Profile        *Profile
}

// Render writes the success document.
func (s *Success) Render() []byte {
	var w writer
	w.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.open("config-auth", "client", "vpn", "type", "complete", "aggregate-auth-version", "2")
	w.version()
	w.elem("session-id", s.SessionID)
	w.elem("session-token", s.SessionToken)
	w.open("auth", "id", "success")
	w.elem("banner", s.Banner)
	w.elemAttrs("message", s.Message, "id", "0", "param1", "", "param2", "")
	w.close("auth")
	w.open("capabilities")
	w.elem("crypto-supported", "ssl-dhe")
	w.close("capabilities")
	w.open("config", "client", "vpn", "type", "private")
	if s.ServerCertHash != "" {
		w.open("vpn-base-config")
		w.elem("server-cert-hash", s.ServerCertHash)
		w.close("vpn-base-config")
	}
	w.open("opaque", "is-for", "vpn-client")
	w.elem("tunnel-group", s.TunnelGroup)
	w.close("opaque")
	if s.Profile != nil {
		w.open("vpn-profile-manifest")
		w.open("vpn", "rev", "1.0")
		w.open("file", "type", "profile", "service-type", "user")
		w.elem("uri", s.Profile.URI)
		w.elem("hash", s.Profile.SHA1, "type", "sha1")
		w.close("file")
		w.close("vpn")
		w.close("vpn-profile-manifest")
	}
	w.close("config")
	w.close("config-auth")
	return w.b.Bytes()
}

// Logout is the answer to a logout request.
func Logout() []byte {
	var w writer
	w.raw(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.open("config-auth", "client", "vpn", "type", "complete", "aggregate-auth-version", "2")
	w.version()
	w.elem("logout", "success", "result", "success")
	w.close("config-auth")
	return w.b.Bytes()
}

// writer builds a document; every text and attribute value goes through xml.EscapeText.
type writer struct{ b bytes.Buffer }

func (w *writer) raw(s string) { w.b.WriteString(s) }

func (w *writer) attrs(kv []string) {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		w.b.WriteByte(' ')
		w.b.WriteString(kv[i])
		w.b.WriteString(`="`)
		_ = xml.EscapeText(&w.b, []byte(kv[i+1]))
		w.b.WriteByte('"')
	}
}

func (w *writer) open(name string, kv ...string) {
	w.b.WriteByte('<')
	w.b.WriteString(name)
	w.attrs(kv)
	w.b.WriteString(">\n")
}

func (w *writer) close(name string) {
	w.b.WriteString("</")
	w.b.WriteString(name)
	w.b.WriteString(">\n")
}

func (w *writer) empty(name string, kv ...string) {
	w.b.WriteByte('<')
	w.b.WriteString(name)
	w.attrs(kv)
	w.b.WriteString("/>\n")
}

// elem writes <name attrs>text</name>, or nothing when text is empty.
func (w *writer) elem(name, text string, kv ...string) {
	if text == "" {
		return
	}
	w.always(name, text, kv...)
}

// elemAttrs writes the element even when text is empty.
func (w *writer) elemAttrs(name, text string, kv ...string) { w.always(name, text, kv...) }

func (w *writer) always(name, text string, kv ...string) {
	w.b.WriteByte('<')
	w.b.WriteString(name)
	w.attrs(kv)
	w.b.WriteByte('>')
	_ = xml.EscapeText(&w.b, []byte(text))
	w.b.WriteString("</")
	w.b.WriteString(name)
	w.b.WriteString(">\n")
}

func (w *writer) version() { w.always("version", "1", "who", "sg") }

func (w *writer) opaque(o Opaque) {
	if o == (Opaque{}) {
		return
	}
	w.open("opaque", "is-for", "sg")
	w.elem("tunnel-group", o.TunnelGroup)
	w.elem("group-alias", o.GroupAlias)
	w.elem("aggauth-handle", o.AuthHandle)
	w.elem("config-hash", o.ConfigHash)
	w.close("opaque")
}
