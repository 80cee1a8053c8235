package pskgcm

import (
	"bytes"
	"testing"

	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
)

func TestSuite(t *testing.T) {
	ms, cr, sr := bytes.Repeat([]byte{1}, 48), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	server, client := &Suite{}, &Suite{}
	if server.IsInitialized() {
		t.Fatal("initialized before Init")
	}
	if _, err := server.Encrypt(&recordlayer.RecordLayer{}, nil); err == nil {
		t.Fatal("Encrypt before Init")
	}
	if err := server.Init(ms, cr, sr, false); err != nil {
		t.Fatal(err)
	}
	if err := client.Init(ms, cr, sr, true); err != nil {
		t.Fatal(err)
	}
	if k := server.Secrets(); k == nil || !bytes.Equal(k.MasterSecret, ms) || !bytes.Equal(k.ClientRandom, cr) {
		t.Fatalf("secrets %+v", k)
	}
	hdr := recordlayer.Header{ContentType: protocol.ContentTypeApplicationData, Version: protocol.Version1_2, Epoch: 1, SequenceNumber: 5}
	raw, _ := hdr.Marshal()
	pkt := &recordlayer.RecordLayer{Header: hdr, Content: &protocol.ApplicationData{Data: []byte("hello")}}
	enc, err := server.Encrypt(pkt, append(raw, "hello"...))
	if err != nil {
		t.Fatal(err)
	}
	var h recordlayer.Header
	if err := h.Unmarshal(enc); err != nil {
		t.Fatal(err)
	}
	dec, err := client.Decrypt(h, enc)
	if err != nil || !bytes.HasSuffix(dec, []byte("hello")) {
		t.Fatalf("decrypt %q %v", dec, err)
	}
	if server.ID() != ID || server.String() != Name || server.HashFunc()().Size() != 48 || server.ECC() {
		t.Error("suite description")
	}
}
