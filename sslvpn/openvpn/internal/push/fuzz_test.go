package push

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseReply: PUSH_REPLY messages; the options survive rebuilding.
func FuzzParseReply(f *testing.F) {
	f.Add("PUSH_REPLY,route 10.50.0.0 255.255.255.0,topology subnet,ping 10,ping-restart 60,ifconfig 10.8.0.2 255.255.255.0,peer-id 0,cipher AES-256-GCM")
	f.Add("PUSH_REPLY,route-gateway 10.8.0.1,push-continuation 2")
	f.Fuzz(func(t *testing.T, msg string) {
		opts, _, err := ParseReply(msg)
		if err != nil {
			return
		}
		msgs, err := BuildReply(opts)
		if err != nil {
			t.Fatalf("parsed options do not rebuild: %v", err)
		}
		var back []string
		for _, m := range msgs {
			o, _, err := ParseReply(m)
			if err != nil {
				t.Fatalf("rebuilt message does not parse: %v", err)
			}
			back = append(back, o...)
		}
		if diff := cmp.Diff(back, opts); diff != "" {
			t.Fatalf("(-got +want)\n%s", diff)
		}
	})
}

// FuzzSplitMessages: control-channel plaintext split into NUL-terminated messages.
func FuzzSplitMessages(f *testing.F) {
	f.Add([]byte("PUSH_REQUEST\x00"))
	f.Add([]byte("EXIT\x00\x00AUTH_FAILED,x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range SplitMessages(b) {
			if m == "" {
				t.Fatal("empty message")
			}
			for i := 0; i < len(m); i++ {
				if m[i] == 0 {
					t.Fatal("NUL inside a message")
				}
			}
		}
	})
}
