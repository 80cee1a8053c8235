package sslvpnsvc

import (
	"net/http"

	"toride/appliance/api"
	"toride/sslvpn"
	"toride/sslvpn/userauth"
)

// Status is the answer of GET /api/v1/sslvpn/status.
type Status struct {
	Servers []sslvpn.ServerStatus `json:"servers"`
	Logins  userauth.Counters     `json:"logins"`
}

// Sessions is the answer of GET /api/v1/sslvpn/sessions.
type Sessions struct {
	Sessions []sslvpn.SessionInfo `json:"sessions"`
}

// Register routes GET /api/v1/sslvpn/status (each server's state and the login counters) and
// GET /api/v1/sslvpn/sessions (every connected session) on s.
func (c *Component) Register(s *api.Server) {
	s.HandleFunc("GET /api/v1/sslvpn/status", func(*http.Request) (any, error) {
		return Status{Servers: c.conc.Status(), Logins: c.conc.Auth().Counters()}, nil
	})
	s.HandleFunc("GET /api/v1/sslvpn/sessions", func(*http.Request) (any, error) {
		list := c.conc.Sessions("")
		if list == nil {
			list = []sslvpn.SessionInfo{}
		}
		return Sessions{Sessions: list}, nil
	})
}
