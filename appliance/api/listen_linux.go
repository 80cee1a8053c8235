package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ServeUnix serves the API on a unix socket at path until ctx ends, then removes the socket. The socket is 0660:
// root and the socket's group may manage the appliance. A stale socket file from a crash is replaced; a live one
// (another torided) is an error. ready, if not nil, is called once the socket accepts connections.
func (s *Server) ServeUnix(ctx context.Context, path string, ready func()) error {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("api: %s: another torided is serving this socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("api: remove stale socket: %w", err)
	}
	old := syscall.Umask(0o117)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return WithAuthor(ctx, peerUser(c))
		},
		ErrorLog: nil,
	}
	return serve(ctx, srv, ln, ready)
}

// serve runs srv on ln until ctx ends, then shuts it down, giving requests under way (a commit) time to finish.
func serve(ctx context.Context, srv *http.Server, ln net.Listener, ready func()) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// peerUser names the user at the other end of a unix socket, from the kernel's peer credentials.
func peerUser(c net.Conn) string {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return "unknown"
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return "unknown"
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return "unknown"
	}
	if u, err := user.LookupId(strconv.Itoa(int(cred.Uid))); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(int(cred.Uid))
}
