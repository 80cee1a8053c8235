// Package vici is the engine's typed client of charon's VICI protocol, on top of github.com/strongswan/govici.
//
// Every request and answer is a Go struct with `vici` tags; every call takes a context. A Client holds two
// sessions: one for commands and one that only receives events, so a burst of events never delays a command and a
// slow command never drops events (govici drops events a subscriber does not take in time; the engine resyncs with
// ListSAs for that reason).
//
// A Client is safe for concurrent use. When charon exits, calls fail and the event channel is closed; the owner
// dials a new Client after charon is back.
package vici

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	govici "github.com/strongswan/govici/vici"
)

// ErrVICI is wrapped by every error of this package.
var ErrVICI = errors.New("vici")

// Client is a connection to one charon's VICI socket.
type Client struct {
	cmd    *govici.Session
	mu     sync.Mutex        // serializes commands: govici allows one outstanding request per session
	lists  chan govici.Event // list-sa / list-conn events of the cmd session, see list
	events *govici.Session
	once   sync.Once
	wg     sync.WaitGroup // the event forwarder started by Subscribe
}

// Dial connects to the VICI socket at path. It does not check that charon answers; call Version for that.
func Dial(ctx context.Context, path string) (*Client, error) {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	// govici dials with context.Background(); bound the dial with ctx ourselves.
	dialCtx := func(_ context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) }
	cmd, err := govici.NewSession(govici.WithSocketPath(path), govici.WithDialContext(dialCtx))
	if err != nil {
		return nil, fmt.Errorf("%w: connect %s: %w", ErrVICI, path, err)
	}
	ev, err := govici.NewSession(govici.WithSocketPath(path), govici.WithDialContext(dialCtx))
	if err != nil {
		cmd.Close()
		return nil, fmt.Errorf("%w: connect %s: %w", ErrVICI, path, err)
	}
	c := &Client{cmd: cmd, events: ev, lists: make(chan govici.Event, 4096)}
	cmd.NotifyEvents(c.lists)
	if err := subscribe(ctx, cmd, "list-sa", "list-conn"); err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: subscribe list events: %w", ErrVICI, err)
	}
	return c, nil
}

// Close closes both sessions. It is idempotent.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.cmd.Close()
		c.events.Close()
	})
	c.wg.Wait()
	return nil
}

// call runs one command. govici sets a read deadline of (ctx deadline + 5 s) on the shared connection, and a
// read timeout kills the session; every call therefore carries a deadline so a wedged charon cannot hang us.
func (c *Client) call(ctx context.Context, cmd string, in any, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callLocked(ctx, cmd, in, out)
}

func (c *Client) callLocked(ctx context.Context, cmd string, in any, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	var msg *govici.Message
	if in != nil {
		m, err := govici.MarshalMessage(in)
		if err != nil {
			return fmt.Errorf("%w: %s: encode: %w", ErrVICI, cmd, err)
		}
		msg = m
	}
	resp, err := c.cmd.Call(ctx, cmd, msg)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrVICI, cmd, err)
	}
	if out != nil {
		if err := govici.UnmarshalMessage(resp, out); err != nil {
			return fmt.Errorf("%w: %s: decode: %w", ErrVICI, cmd, err)
		}
	}
	return nil
}

// Version is charon's answer to "version".
type Version struct {
	Daemon  string `vici:"daemon"`
	Version string `vici:"version"`
	Sysname string `vici:"sysname"`
	Release string `vici:"release"`
	Machine string `vici:"machine"`
}

// Version asks charon who it is; a successful answer means charon is up.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.call(ctx, "version", nil, &v)
	return v, err
}

// AuthRound is one authentication round of a connection ("local" or "remote" section).
type AuthRound struct {
	Auth string `vici:"auth"`
	ID   string `vici:"id"`
}

// Child is a CHILD_SA configuration inside a Conn.
type Child struct {
	LocalTS      []string `vici:"local_ts"`
	RemoteTS     []string `vici:"remote_ts"`
	ESPProposals []string `vici:"esp_proposals"`
	RekeyTime    string   `vici:"rekey_time"`
	LifeTime     string   `vici:"life_time"`
	RandTime     string   `vici:"rand_time"`
	ReplayWindow int      `vici:"replay_window"`
	DPDAction    string   `vici:"dpd_action"`
	StartAction  string   `vici:"start_action"`
	CloseAction  string   `vici:"close_action"`
	Mode         string   `vici:"mode"`
	MarkIn       string   `vici:"mark_in"`
	MarkOut      string   `vici:"mark_out"`
	// IfIDIn and IfIDOut bind the CHILD_SA's SAs and policies to the xfrm interface with that if_id (decimal).
	IfIDIn     string `vici:"if_id_in"`
	IfIDOut    string `vici:"if_id_out"`
	Inactivity string `vici:"inactivity"`
}

// Conn is one connection (IKE_SA configuration) for load-conn.
type Conn struct {
	Version     string           `vici:"version"`
	LocalAddrs  []string         `vici:"local_addrs"`
	RemoteAddrs []string         `vici:"remote_addrs"`
	Proposals   []string         `vici:"proposals"`
	Aggressive  bool             `vici:"aggressive"`
	Encap       bool             `vici:"encap"`
	Mobike      bool             `vici:"mobike"`
	DPDDelay    string           `vici:"dpd_delay"`
	DPDTimeout  string           `vici:"dpd_timeout"`
	RekeyTime   string           `vici:"rekey_time"`
	ReauthTime  string           `vici:"reauth_time"`
	OverTime    string           `vici:"over_time"`
	RandTime    string           `vici:"rand_time"`
	Keyingtries int              `vici:"keyingtries"`
	Unique      string           `vici:"unique"`
	Local       AuthRound        `vici:"local"`
	Remote      AuthRound        `vici:"remote"`
	Children    map[string]Child `vici:"children"`
}

// LoadConn loads (or replaces) the connection name. Established SAs keep their old settings until re-created.
func (c *Client) LoadConn(ctx context.Context, name string, conn Conn) error {
	return c.call(ctx, "load-conn", map[string]Conn{name: conn}, nil)
}

// UnloadConn removes the connection name. Its SAs are not terminated: call Terminate first.
func (c *Client) UnloadConn(ctx context.Context, name string) error {
	return c.call(ctx, "unload-conn", struct {
		Name string `vici:"name"`
	}{name}, nil)
}

// Shared is a shared secret for load-shared. Data is the secret itself; it only ever travels over the VICI
// socket.
type Shared struct {
	ID     string   `vici:"id"`
	Type   string   `vici:"type"`
	Data   string   `vici:"data"`
	Owners []string `vici:"owners"`
}

// LoadShared loads (or replaces, by ID) a shared secret.
func (c *Client) LoadShared(ctx context.Context, s Shared) error {
	return c.call(ctx, "load-shared", s, nil)
}

// UnloadShared removes the shared secret with the given ID.
func (c *Client) UnloadShared(ctx context.Context, id string) error {
	return c.call(ctx, "unload-shared", struct {
		ID string `vici:"id"`
	}{id}, nil)
}

// GetShared lists the IDs of the loaded shared secrets.
func (c *Client) GetShared(ctx context.Context) ([]string, error) {
	var out struct {
		Keys []string `vici:"keys"`
	}
	err := c.call(ctx, "get-shared", nil, &out)
	return out.Keys, err
}

// Initiate asks charon to establish CHILD_SA child of connection ike (and the IKE_SA if needed). It returns at
// once (timeout -1): the outcome shows in events and ListSAs.
func (c *Client) Initiate(ctx context.Context, ike, child string) error {
	return c.call(ctx, "initiate", struct {
		Child   string `vici:"child"`
		IKE     string `vici:"ike"`
		Timeout int    `vici:"timeout"`
	}{child, ike, -1}, nil)
}

// TerminateIKE deletes the IKE_SA with the given unique id and its CHILD_SAs. With force, charon destroys the
// SA at once, without waiting for the peer to confirm the DELETE: this is how traffic leaves a dead tunnel without
// waiting for DPD. It returns at once (timeout -1).
func (c *Client) TerminateIKE(ctx context.Context, ikeID uint64, force bool) error {
	return c.call(ctx, "terminate", struct {
		IKEID   uint64 `vici:"ike-id"`
		Force   bool   `vici:"force"`
		Timeout int    `vici:"timeout"`
	}{ikeID, force, -1}, nil)
}

// TerminateChild deletes the CHILD_SA with the given unique id. It returns at once (timeout -1).
func (c *Client) TerminateChild(ctx context.Context, childID uint64) error {
	return c.call(ctx, "terminate", struct {
		ChildID uint64 `vici:"child-id"`
		Timeout int    `vici:"timeout"`
	}{childID, -1}, nil)
}

// ChildSA is a CHILD_SA as list-sas reports it.
type ChildSA struct {
	Name        string   `vici:"name"`
	UniqueID    uint64   `vici:"uniqueid"`
	ReqID       uint64   `vici:"reqid"`
	State       string   `vici:"state"`
	Mode        string   `vici:"mode"`
	Protocol    string   `vici:"protocol"`
	Encap       bool     `vici:"encap"`
	SPIIn       string   `vici:"spi-in"`
	SPIOut      string   `vici:"spi-out"`
	MarkIn      string   `vici:"mark-in"`
	MarkOut     string   `vici:"mark-out"`
	EncrAlg     string   `vici:"encr-alg"`
	EncrKeysize int      `vici:"encr-keysize"`
	IntegAlg    string   `vici:"integ-alg"`
	DHGroup     string   `vici:"dh-group"`
	BytesIn     uint64   `vici:"bytes-in"`
	PacketsIn   uint64   `vici:"packets-in"`
	BytesOut    uint64   `vici:"bytes-out"`
	PacketsOut  uint64   `vici:"packets-out"`
	InstallTime int64    `vici:"install-time"`
	RekeyTime   int64    `vici:"rekey-time"`
	LifeTime    int64    `vici:"life-time"`
	LocalTS     []string `vici:"local-ts"`
	RemoteTS    []string `vici:"remote-ts"`
}

// IKESA is an IKE_SA as list-sas reports it. Name is the connection name (the key of the list-sa message).
type IKESA struct {
	Name         string             `vici:"-"`
	UniqueID     uint64             `vici:"uniqueid"`
	Version      int                `vici:"version"`
	State        string             `vici:"state"`
	LocalHost    string             `vici:"local-host"`
	LocalPort    int                `vici:"local-port"`
	LocalID      string             `vici:"local-id"`
	RemoteHost   string             `vici:"remote-host"`
	RemotePort   int                `vici:"remote-port"`
	RemoteID     string             `vici:"remote-id"`
	Initiator    bool               `vici:"initiator"`
	NATLocal     bool               `vici:"nat-local"`
	NATRemote    bool               `vici:"nat-remote"`
	NATFake      bool               `vici:"nat-fake"`
	NATAny       bool               `vici:"nat-any"`
	EncrAlg      string             `vici:"encr-alg"`
	EncrKeysize  int                `vici:"encr-keysize"`
	IntegAlg     string             `vici:"integ-alg"`
	PRFAlg       string             `vici:"prf-alg"`
	DHGroup      string             `vici:"dh-group"`
	Established  int64              `vici:"established"`
	RekeyTime    int64              `vici:"rekey-time"`
	ReauthTime   int64              `vici:"reauth-time"`
	ChildSAs     map[string]ChildSA `vici:"child-sas"`
	TasksActive  []string           `vici:"tasks-active"`
	TasksQueued  []string           `vici:"tasks-queued"`
	TasksPassive []string           `vici:"tasks-passive"`
}

// ListSAs returns every IKE_SA with its CHILD_SAs.
func (c *Client) ListSAs(ctx context.Context) ([]IKESA, error) {
	// Blocking mode (no "noblock"): with noblock, charon silently skips IKE_SAs that are busy (say, negotiating
	// a CHILD_SA), which would look like a tunnel going down.
	msgs, err := c.list(ctx, "list-sas", "list-sa")
	if err != nil {
		return nil, err
	}
	var out []IKESA
	for _, m := range msgs {
		sas, err := decodeIKESAs(m)
		if err != nil {
			return nil, fmt.Errorf("%w: list-sas: %w", ErrVICI, err)
		}
		out = append(out, sas...)
	}
	return out, nil
}

// list runs a command that streams events and returns the streamed messages.
//
// It does not use govici's CallStreaming: that waits for the streamed events and the final response with one
// select, so when both are pending it may take the response first and lose the remaining events (a tunnel then
// seems to vanish from list-sas). Instead the session is subscribed to the list events like to any event: govici
// dispatches each event before it reads the next packet, so once the command's response has arrived every event
// of the stream is already in c.lists.
func (c *Client) list(ctx context.Context, cmd, event string) ([]*govici.Message, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	drain := func() []*govici.Message {
		var out []*govici.Message
		for {
			select {
			case ev, ok := <-c.lists:
				if !ok {
					return out
				}
				if ev.Name == event && ev.Message != nil {
					out = append(out, ev.Message)
				}
			default:
				return out
			}
		}
	}
	drain() // leftovers of an earlier, failed call
	if err := c.callLocked(ctx, cmd, nil, nil); err != nil {
		return nil, err
	}
	return drain(), nil
}

// decodeIKESAs decodes a message of the list-sa / ike-updown form: one section per IKE_SA, keyed by name. Other
// top-level keys ("up") are skipped.
func decodeIKESAs(m *govici.Message) ([]IKESA, error) {
	var out []IKESA
	for _, k := range m.Keys() {
		sec, ok := m.Get(k).(*govici.Message)
		if !ok {
			continue
		}
		var sa IKESA
		if err := govici.UnmarshalMessage(sec, &sa); err != nil {
			return nil, fmt.Errorf("IKE_SA %q: %w", k, err)
		}
		sa.Name = k
		out = append(out, sa)
	}
	return out, nil
}

// ListConns returns the names of the loaded connections.
func (c *Client) ListConns(ctx context.Context) ([]string, error) {
	msgs, err := c.list(ctx, "list-conns", "list-conn")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, m := range msgs {
		names = append(names, m.Keys()...)
	}
	return names, nil
}

// Event is a server-issued event the engine follows.
type Event struct {
	Name   string // "ike-updown", "child-updown", "child-rekey"
	Up     bool   // for the updown events
	SAs    []IKESA
	Rekeys []ChildRekey // for child-rekey
	Time   time.Time
}

// ChildRekey is one CHILD_SA rekeying reported by a child-rekey event: New replaces Old.
type ChildRekey struct {
	IKE string
	Old ChildSA `vici:"old"`
	New ChildSA `vici:"new"`
}

// decodeRekeys decodes a child-rekey event: { <IKE_SA name> = { child-sas = { <name> = { old = {…}, new = {…} } } } }.
func decodeRekeys(m *govici.Message) []ChildRekey {
	var out []ChildRekey
	for _, k := range m.Keys() {
		sec, ok := m.Get(k).(*govici.Message)
		if !ok {
			continue
		}
		var ike struct {
			Children map[string]ChildRekey `vici:"child-sas"`
		}
		if err := govici.UnmarshalMessage(sec, &ike); err != nil {
			continue
		}
		for _, r := range ike.Children {
			r.IKE = k
			out = append(out, r)
		}
	}
	return out
}

// Subscribe registers for ike-updown, child-updown and child-rekey and delivers them on a channel that is closed
// when the event session ends (charon exited, or Close). Events that arrive while the channel is full are
// dropped, as govici drops them: callers must resync with ListSAs. Subscribe may be called once per Client.
func (c *Client) Subscribe(ctx context.Context) (<-chan Event, error) {
	raw := make(chan govici.Event, 64)
	c.events.NotifyEvents(raw)
	if err := subscribe(ctx, c.events, "ike-updown", "child-updown", "child-rekey"); err != nil {
		c.events.StopEvents(raw)
		return nil, fmt.Errorf("%w: subscribe: %w", ErrVICI, err)
	}
	out := make(chan Event, 64)
	c.wg.Add(1)
	go func() {
		// Ends when govici closes raw, which it does when the event session ends (Close, or charon exited).
		defer c.wg.Done()
		defer close(out)
		for ev := range raw {
			e := Event{Name: ev.Name, Time: ev.Timestamp}
			if ev.Message != nil {
				e.Up = ev.Message.Get("up") == "yes"
				if ev.Name == "child-rekey" {
					e.Rekeys = decodeRekeys(ev.Message)
				} else {
					e.SAs, _ = decodeIKESAs(ev.Message)
				}
			}
			select {
			case out <- e:
			default:
			}
		}
	}()
	return out, nil
}

// subscribe registers events on a session, bounded by ctx (govici's Subscribe takes no context; closing the
// session ends it).
func subscribe(ctx context.Context, s *govici.Session, events ...string) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Subscribe(events...) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		s.Close()
		<-errc
		return ctx.Err()
	}
}
