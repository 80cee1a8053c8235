package bgp

import (
	"context"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Status is the speaker's state, JSON-ready.
type Status struct {
	LocalASN  uint32           `json:"local_asn,omitempty"`
	RouterID  string           `json:"router_id,omitempty"`
	Neighbors []NeighborStatus `json:"neighbors"`
}

// NeighborStatus is one session's state.
type NeighborStatus struct {
	Name        string `json:"name"`
	PeerAddress string `json:"peer_address"`
	PeerASN     uint32 `json:"peer_asn"`
	// State is BGP's session state: idle, connect, active, opensent, openconfirm or established.
	State string `json:"state"`
	// Since is when the session became established (zero unless it is), Uptime how long ago that was.
	Since              time.Time     `json:"since,omitzero"`
	Uptime             time.Duration `json:"uptime_ns"`
	PrefixesReceived   uint64        `json:"prefixes_received"`
	PrefixesAdvertised uint64        `json:"prefixes_advertised"`
	// LastDown says why the session last ended, when gobgp knows.
	LastDown string `json:"last_down,omitempty"`
}

// Session states.
const (
	StateIdle        = "idle"
	StateConnect     = "connect"
	StateActive      = "active"
	StateOpenSent    = "opensent"
	StateOpenConfirm = "openconfirm"
	StateEstablished = "established"
)

var stateNames = map[api.PeerState_SessionState]string{
	api.PeerState_SESSION_STATE_IDLE:        StateIdle,
	api.PeerState_SESSION_STATE_CONNECT:     StateConnect,
	api.PeerState_SESSION_STATE_ACTIVE:      StateActive,
	api.PeerState_SESSION_STATE_OPENSENT:    StateOpenSent,
	api.PeerState_SESSION_STATE_OPENCONFIRM: StateOpenConfirm,
	api.PeerState_SESSION_STATE_ESTABLISHED: StateEstablished,
}

// Status reports every configured neighbor, in configuration order. It waits briefly for gobgp's event loop.
func (s *Speaker) Status() Status {
	c := s.view.Load()
	st := Status{LocalASN: c.LocalASN, Neighbors: []NeighborStatus{}}
	if c.RouterID.IsValid() {
		st.RouterID = c.RouterID.String()
	}
	peers := map[string]*api.Peer{}
	s.running(func(inst *instance) {
		_ = inst.srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			if p.GetConf() != nil {
				peers[p.Conf.NeighborAddress] = p
			}
		})
	})
	now := time.Now()
	for _, n := range c.Neighbors {
		ns := NeighborStatus{Name: n.Name, PeerAddress: n.PeerAddress.String(), PeerASN: n.PeerASN, State: StateIdle}
		if p := peers[n.PeerAddress.String()]; p != nil {
			if name, ok := stateNames[p.GetState().GetSessionState()]; ok {
				ns.State = name
			}
			if ns.State == StateEstablished {
				if up := p.GetTimers().GetState().GetUptime(); up != nil {
					ns.Since = up.AsTime()
					ns.Uptime = now.Sub(ns.Since).Truncate(time.Second)
				}
			}
			for _, af := range p.GetAfiSafis() {
				ns.PrefixesReceived += af.GetState().GetReceived()
				ns.PrefixesAdvertised += af.GetState().GetAdvertised()
			}
			ns.LastDown = p.GetState().GetDisconnectMessage()
		}
		st.Neighbors = append(st.Neighbors, ns)
	}
	return st
}

// LearnedRoute is one path learned from a neighbor, as `show ipsec bgp routes` lists it.
type LearnedRoute struct {
	Prefix          netip.Prefix `json:"prefix"`
	NextHop         netip.Addr   `json:"next_hop"`
	Neighbor        string       `json:"neighbor"`
	Best            bool         `json:"best"`
	LocalPreference uint32       `json:"local_preference"`
	ASPath          []uint32     `json:"as_path"`
}

// Routes lists every learned path, sorted by prefix and best first. It waits briefly for gobgp's event loop.
func (s *Speaker) Routes() []LearnedRoute {
	routes := []LearnedRoute{}
	s.running(func(inst *instance) {
		_ = listLearned(inst.srv, neighborNames(s.view.Load()), func(r LearnedRoute) { routes = append(routes, r) })
	})
	slices.SortStableFunc(routes, func(a, b LearnedRoute) int {
		if c := comparePrefix(a.Prefix, b.Prefix); c != 0 {
			return c
		}
		switch {
		case a.Best && !b.Best:
			return -1
		case b.Best && !a.Best:
			return 1
		}
		return 0
	})
	return routes
}

// listLearned calls fn with every path of gobgp's table that a configured neighbor sent (our own announcements
// and paths of neighbors no longer configured are left out).
func listLearned(srv *server.BgpServer, names map[netip.Addr]string, fn func(LearnedRoute)) error {
	for _, family := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: family},
			func(nlri bgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					name, ok := names[p.PeerAddress]
					if !ok || p.Withdrawal || p.IsNexthopInvalid {
						continue
					}
					r, ok := learned(p)
					if !ok {
						continue
					}
					r.Neighbor = name
					fn(r)
				}
			})
		if err != nil {
			return err
		}
	}
	return nil
}

func learned(p *apiutil.Path) (LearnedRoute, bool) {
	pfx, ok := p.Nlri.(*bgp.IPAddrPrefix)
	if !ok {
		return LearnedRoute{}, false
	}
	r := LearnedRoute{Prefix: pfx.Prefix, Best: p.Best, LocalPreference: DefaultLocalPreference, ASPath: []uint32{}}
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			r.NextHop = a.Value
		case *bgp.PathAttributeMpReachNLRI:
			r.NextHop = a.Nexthop
		case *bgp.PathAttributeLocalPref:
			r.LocalPreference = a.Value
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				r.ASPath = append(r.ASPath, seg.GetAS()...)
			}
		}
	}
	return r, r.NextHop.IsValid()
}
