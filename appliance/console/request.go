package console

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// request: request sslvpn otp generate|delete SERVER USER, request sslvpn session disconnect ID,
// request pki crl load SERVER FILE, request pki certificate issue|revoke SERVER USER,
// request system image install FILE [SHA256], request system reboot.
func (s *Shell) request(ctx context.Context, args []string) error {
	switch {
	case len(args) == 5 && args[0] == "sslvpn" && args[1] == "otp" && args[2] == "generate":
		return s.generateOTP(ctx, args[3], args[4])
	case len(args) == 5 && args[0] == "sslvpn" && args[1] == "otp" && args[2] == "delete":
		if err := s.api.DeleteOTP(ctx, args[3], args[4]); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "The OTP key of %s is deleted; %s cannot log in with a one-time password until a new key is generated.\n", args[4], args[4])
		return nil
	case len(args) == 4 && args[0] == "sslvpn" && args[1] == "session" && args[2] == "disconnect":
		return s.disconnect(ctx, args[3])
	case len(args) == 5 && args[0] == "pki" && args[1] == "crl" && args[2] == "load":
		return s.loadCRL(ctx, args[3], args[4])
	case len(args) == 5 && args[0] == "pki" && args[1] == "certificate" && args[2] == "issue":
		out, err := s.api.IssueCertificate(ctx, args[3], args[4])
		if err != nil {
			return err
		}
		fmt.Fprintf(s.out, "Issued certificate %s to %s, valid until %s.\n", out.Serial, args[4], out.NotAfter.Local().Format(time.DateOnly))
		fmt.Fprintf(s.out, "`export sslvpn client-config %s %s FILE` writes the OpenVPN profile with it and its key.\n", args[3], args[4])
		return nil
	case (len(args) == 4 || len(args) == 5) && args[0] == "system" && args[1] == "image" && args[2] == "install":
		sum := ""
		if len(args) == 5 {
			sum = args[4]
		}
		fmt.Fprintf(s.out, "Writing %s into the slot not running and checking it...\n", args[3])
		out, err := s.api.InstallImage(ctx, args[3], sum)
		if err != nil {
			return err
		}
		fmt.Fprintln(s.out, out.Message)
		return nil
	case len(args) == 2 && args[0] == "system" && args[1] == "reboot":
		if err := s.api.Reboot(ctx); err != nil {
			return err
		}
		fmt.Fprintln(s.out, "Rebooting.")
		return nil
	case len(args) == 2 && args[0] == "system" && args[1] == "poweroff":
		if err := s.api.PowerOff(ctx); err != nil {
			return err
		}
		fmt.Fprintln(s.out, "Powering off.")
		return nil
	case len(args) == 5 && args[0] == "pki" && args[1] == "certificate" && args[2] == "revoke":
		if err := s.api.RevokeCertificate(ctx, args[3], args[4]); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "The certificates of %s on %s are revoked and the CRL is reissued; their sessions are cut.\n", args[4], args[3])
		return nil
	}
	return usagef("request sslvpn otp generate|delete SERVER USER | request sslvpn session disconnect ID | " +
		"request pki crl load SERVER FILE | request pki certificate issue|revoke SERVER USER | " +
		"request system image install FILE [SHA256] | request system reboot | request system poweroff")
}

// generateOTP issues a TOTP key and shows it this once: the secret, the otpauth:// URI and, on a terminal, the
// URI as a QR code to scan with an authenticator app.
func (s *Shell) generateOTP(ctx context.Context, server, user string) error {
	out, err := s.api.IssueOTP(ctx, server, user)
	if err != nil {
		return err
	}
	k := out.Key
	fmt.Fprintf(s.out, "OTP key of %s on %s (shown only now; the appliance keeps it sealed):\n", k.UserID, server)
	fmt.Fprintf(s.out, "  secret  %s\n", k.Secret)
	fmt.Fprintf(s.out, "  URI     %s\n", k.OTPAuthURI)
	if !s.outIsTerminal() {
		fmt.Fprintln(s.out, "Not a terminal: no QR code. Enter the secret in the authenticator app, or make a QR code of the URI.")
		return nil
	}
	fmt.Fprintln(s.out, "Scan with Google or Microsoft Authenticator:")
	return WriteQR(s.out, k.OTPAuthURI)
}

func (s *Shell) outIsTerminal() bool {
	if s.terminal != nil {
		return *s.terminal
	}
	f, ok := s.out.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// disconnect cuts the session whose ID is id or starts with it (show sslvpn sessions shows 8 characters).
func (s *Shell) disconnect(ctx context.Context, id string) error {
	list, err := s.api.SSLVPNSessions(ctx)
	if err != nil {
		return err
	}
	var server, full string
	for _, ss := range list.Sessions {
		if ss.ID == id || (len(id) >= 4 && strings.HasPrefix(ss.ID, id)) {
			if full != "" && ss.ID != full {
				return usagef("%q names more than one session: give more of the ID", id)
			}
			server, full = ss.Server, ss.ID
		}
	}
	if full == "" {
		return usagef("no session %q; show sslvpn sessions lists them", id)
	}
	if err := s.api.Disconnect(ctx, server, full); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "Session %s on %s is disconnected.\n", full, server)
	return nil
}

func (s *Shell) loadCRL(ctx context.Context, server, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out, err := s.api.LoadCRL(ctx, server, data)
	if err != nil {
		return err
	}
	c := out.CRL
	next := "no next update"
	if !c.NextUpdate.IsZero() {
		next = "next update " + c.NextUpdate.Local().Format(time.DateTime)
	}
	fmt.Fprintf(s.out, "Loaded the CRL of %s for CA %s: %d revoked, %s.\n", c.Issuer, c.CA, c.Revoked, next)
	if c.Stale {
		fmt.Fprintln(s.out, "It is already STALE: it stays in force, but load a newer one.")
	}
	return nil
}

// export: export sslvpn client-config SERVER USER [FILE] [proto udp].
func (s *Shell) export(ctx context.Context, args []string) error {
	const use = "export sslvpn client-config SERVER USER [FILE] [proto udp]"
	if len(args) < 4 || args[0] != "sslvpn" || args[1] != "client-config" {
		return usagef(use)
	}
	server, user, rest := args[2], args[3], args[4:]
	udp := false
	if n := len(rest); n >= 2 && rest[n-2] == "proto" {
		switch rest[n-1] {
		case "udp":
			udp = true
		case "tcp":
		default:
			return usagef("proto %q: use udp or tcp", rest[n-1])
		}
		rest = rest[:n-2]
	}
	if len(rest) > 1 {
		return usagef(use)
	}
	profile, err := s.api.ClientConfig(ctx, server, user, udp)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		_, err := s.out.Write(profile)
		return err
	}
	// The profile holds the user's private key: readable by its owner only.
	if err := os.WriteFile(rest[0], profile, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "Wrote the OpenVPN profile of %s on %s to %s (it holds the private key: hand it over safely).\n", user, server, rest[0])
	return nil
}
