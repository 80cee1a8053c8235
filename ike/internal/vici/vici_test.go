package vici

import (
	"testing"

	govici "github.com/strongswan/govici/vici"
)

// Messages shaped like charon's list-sa / child-updown / child-rekey events decode into the typed structs.
func TestDecodeEvents(t *testing.T) {
	type child struct {
		Name     string   `vici:"name"`
		UniqueID string   `vici:"uniqueid"`
		ReqID    string   `vici:"reqid"`
		State    string   `vici:"state"`
		Encap    string   `vici:"encap"`
		BytesIn  string   `vici:"bytes-in"`
		LocalTS  []string `vici:"local-ts"`
		Install  string   `vici:"install-time"`
	}
	type ikeSA struct {
		UniqueID   string           `vici:"uniqueid"`
		Version    string           `vici:"version"`
		State      string           `vici:"state"`
		RemotePort string           `vici:"remote-port"`
		NATLocal   string           `vici:"nat-local"`
		Children   map[string]child `vici:"child-sas"`
		Tasks      []string         `vici:"tasks-active"`
	}
	m, err := govici.MarshalMessage(map[string]any{
		"up": "yes",
		"aws-t1": ikeSA{UniqueID: "7", Version: "2", State: "ESTABLISHED", RemotePort: "4500", NATLocal: "yes",
			Children: map[string]child{"aws-t1-net-9": {Name: "aws-t1-net", UniqueID: "9", ReqID: "3", State: "INSTALLED",
				Encap: "yes", BytesIn: "1234", LocalTS: []string{"10.1.0.0/24"}, Install: "12"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sas, err := decodeIKESAs(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 {
		t.Fatalf("got %d SAs", len(sas))
	}
	sa := sas[0]
	ch := sa.ChildSAs["aws-t1-net-9"]
	if sa.Name != "aws-t1" || sa.UniqueID != 7 || sa.Version != 2 || sa.RemotePort != 4500 || !sa.NATLocal ||
		ch.UniqueID != 9 || ch.ReqID != 3 || !ch.Encap || ch.BytesIn != 1234 || ch.InstallTime != 12 || ch.LocalTS[0] != "10.1.0.0/24" {
		t.Errorf("decoded %+v", sa)
	}

	type pair struct {
		Old child `vici:"old"`
		New child `vici:"new"`
	}
	type rekeySA struct {
		Children map[string]pair `vici:"child-sas"`
	}
	rm, err := govici.MarshalMessage(map[string]any{"aws-t2": rekeySA{Children: map[string]pair{
		"aws-t2-net": {Old: child{UniqueID: "4", ReqID: "2"}, New: child{UniqueID: "11", ReqID: "2"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	rs := decodeRekeys(rm)
	if len(rs) != 1 || rs[0].IKE != "aws-t2" || rs[0].Old.UniqueID != 4 || rs[0].New.UniqueID != 11 {
		t.Errorf("rekeys %+v", rs)
	}
}
