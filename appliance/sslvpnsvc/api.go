package sslvpnsvc

import (
	"net/http"

	"toride/appliance/api"
	"toride/sslvpn"
)

// Register routes GET /api/v1/sslvpn/status (each server's state and the login counters) and
// GET /api/v1/sslvpn/sessions (every connected session) on s.
func (c *Component) Register(s *api.Server) {
	s.HandleFunc("GET /api/v1/sslvpn/status", func(*http.Request) (any, error) {
		return map[string]any{"servers": c.conc.Status(), "logins": c.conc.Auth().Counters()}, nil
	})
	s.HandleFunc("GET /api/v1/sslvpn/sessions", func(*http.Request) (any, error) {
		list := c.conc.Sessions("")
		if list == nil {
			list = []sslvpn.SessionInfo{}
		}
		return map[string]any{"sessions": list}, nil
	})
}
