package anyconnect

// SetTap lets the interop tests capture what real clients send (for fuzz seeds). Call it before serving.
func SetTap(s *Server, fn func(conn uint64, kind string, b []byte)) { s.tap = fn }

// SetDTLSSuites limits the DTLS cipher suites the server offers (IANA numbers), so tests can make a client
// use each one. Call it before serving.
func SetDTLSSuites(s *Server, ids ...uint16) { s.dtlsSuites = ids }
