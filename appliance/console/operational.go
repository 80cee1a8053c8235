package console

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"toride/appliance/api"
	"toride/ike"
)

// UsageError is a command line that does not fit; toride exits 2 for it.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }

// Usage is the help of the operational commands.
const Usage = `usage: toride [--socket PATH] [COMMAND]

Commands:
  show configuration [json|commands] [candidate] [--show-secrets]
                                                   the running (or candidate) configuration; secrets
                                                   are **** unless --show-secrets (torided logs who asked)
  show system commit                               the commit archive, newest (0) first
  show status                                      the appliance and its components
  show sslvpn [sessions [detail]]                  SSL-VPN servers, or their connected sessions
  show ipsec [detail]                              IPsec connections and their tunnels
  show ipsec bgp routes                            the routes learned over BGP
  show interfaces                                  network interfaces: state, counters, addresses
  show log [COMPONENT] [lines N]                   torided's recent log (50 lines unless told)
  generate password-hash                           read a password (no echo) and print its bcrypt hash
  generate api-key NAME [read-only]                make an API key (admin unless read-only), put its hash in
                                                   the candidate, print the key once
  import aws-vpn FILE [--local-networks CIDR,…] [--remote-networks CIDR,…] [--name NAME] [--local-address ADDR]
                                                   put the cloud's VPN configuration file into the candidate
  request sslvpn otp generate SERVER USER          issue a TOTP key: its secret, URI and QR code, once
  request sslvpn otp delete SERVER USER            delete a user's TOTP key
  request sslvpn session disconnect ID             cut a session (ID or its first characters)
  request pki crl load SERVER FILE                 load a CA's CRL (PEM or DER) on a server
  request pki certificate issue|revoke SERVER USER issue or revoke a user's client certificate
  export sslvpn client-config SERVER USER [FILE] [proto udp]
                                                   the user's OpenVPN profile (.ovpn), to FILE or stdout
  set PATH... VALUE                                change the candidate
  delete PATH...                                   remove from the candidate
  compare [N]                                      candidate against running, or against commit N
  commit [COMMENT]                                 validate and apply the candidate
  commit-confirm MINUTES [COMMENT]                 commit, reverting by itself unless confirmed in time
  confirm                                          keep a commit-confirm
  discard                                          throw away the candidate's changes
  rollback N                                       commit archive entry N again
With no command, toride reads commands line by line (a shell; configure enters configuration mode).

The socket is --socket, else $TORIDE_SOCKET, else ` + DefaultSocket + `.
`

// DefaultSocket is where torided serves its API unless told otherwise.
const DefaultSocket = "/run/toride/api.sock"

// Report prints err as toride does and returns the exit status for it: 0 none, 2 bad usage, 1 anything else.
func Report(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "toride: %s\n", ue.Msg)
		return 2
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(stderr, "error: %s\n", ae.Message)
		for _, p := range ae.Problems {
			fmt.Fprintf(stderr, "  %s\n", p.String())
		}
		return 1
	}
	fmt.Fprintf(stderr, "toride: %v\n", err)
	return 1
}

// operational runs one operational-mode command: what `toride COMMAND…` runs one-shot.
func (s *Shell) operational(ctx context.Context, args []string) error {
	switch args[0] {
	case "show":
		return s.show(ctx, args[1:])
	case "set", "delete":
		if len(args) < 2 {
			return usagef("%s needs a path, e.g. %s system host-name", args[0], args[0])
		}
		return s.edit(ctx, args[0], args[1:])
	case "commit":
		return s.commit(ctx, 0, strings.Join(args[1:], " "))
	case "commit-confirm":
		if len(args) < 2 {
			return usagef("commit-confirm needs the minutes to wait, e.g. commit-confirm 5")
		}
		m, err := strconv.Atoi(args[1])
		if err != nil || m < 1 {
			return usagef("commit-confirm %q: the minutes must be a whole number of at least 1", args[1])
		}
		return s.commit(ctx, m, strings.Join(args[2:], " "))
	case "confirm":
		if _, err := s.api.Confirm(ctx); err != nil {
			return err
		}
		fmt.Fprintln(s.out, "Confirmed; the configuration stays.")
		return nil
	case "discard":
		ch, err := s.api.Discard(ctx)
		if err != nil {
			return err
		}
		s.changed = ch.Changed
		fmt.Fprintln(s.out, "Changes discarded.")
		return nil
	case "compare":
		rev := -1
		if len(args) > 1 {
			n, err := strconv.Atoi(args[1])
			if err != nil {
				return usagef("compare %q: give a commit number from `show system commit`", args[1])
			}
			rev = n
		}
		out, err := s.api.Compare(ctx, rev)
		if err != nil {
			return err
		}
		if len(out.Diff) == 0 {
			fmt.Fprintln(s.out, "No changes.")
		}
		for _, l := range out.Diff {
			fmt.Fprintln(s.out, l)
		}
		return nil
	case "rollback":
		if len(args) != 2 {
			return usagef("rollback needs one commit number from `show system commit`")
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 {
			return usagef("rollback %q: give a commit number from `show system commit`", args[1])
		}
		out, err := s.api.Rollback(ctx, n)
		if err != nil {
			return err
		}
		s.printCommit(out)
		s.refreshChanged(ctx)
		return nil
	case "import":
		return s.importFile(ctx, args[1:])
	case "generate":
		return s.generate(ctx, args[1:])
	case "request":
		return s.request(ctx, args[1:])
	case "export":
		return s.export(ctx, args[1:])
	case "help", "--help", "-h":
		fmt.Fprint(s.out, Usage)
		return nil
	}
	return usagef("unknown command %q; try toride help", args[0])
}

func (s *Shell) show(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("show what? configuration, system commit or status")
	}
	switch args[0] {
	case "configuration", "config":
		format, source, secrets := "tree", "running", false
		for _, a := range args[1:] {
			switch a {
			case "json", "commands", "tree":
				format = a
			case "candidate", "running":
				source = a
			case "--show-secrets":
				secrets = true
			default:
				return usagef("show configuration %q: use json, commands, candidate or --show-secrets", a)
			}
		}
		switch format {
		case "json":
			raw, err := s.api.Config(ctx, source, secrets)
			if err != nil {
				return err
			}
			_, err = s.out.Write(raw)
			return err
		case "commands":
			out, err := s.api.ConfigCommands(ctx, source, secrets)
			if err != nil {
				return err
			}
			for _, l := range out.Commands {
				fmt.Fprintln(s.out, l)
			}
		default:
			out, err := s.api.ConfigTree(ctx, source, secrets)
			if err != nil {
				return err
			}
			fmt.Fprint(s.out, out.Tree)
		}
		return nil
	case "system":
		if len(args) == 2 && args[1] == "image" {
			return s.showImage(ctx)
		}
		if len(args) < 2 || args[1] != "commit" {
			return usagef("show system commit|image")
		}
		out, err := s.api.Commits(ctx)
		if err != nil {
			return err
		}
		for _, cm := range out.Commits {
			line := fmt.Sprintf("%-3d %s by %s", cm.Index, cm.Time.Local().Format("2006-01-02 15:04:05"), cm.Author)
			if cm.Comment != "" {
				line += ": " + cm.Comment
			}
			if out.PendingConfirm != nil && out.PendingConfirm.Revision == cm.Revision {
				line += fmt.Sprintf("  [awaiting confirm until %s]", out.PendingConfirm.Deadline.Local().Format(time.TimeOnly))
			}
			fmt.Fprintln(s.out, line)
		}
		return nil
	case "ipsec":
		switch strings.Join(args[1:], " ") {
		case "":
			return s.showIPsec(ctx, false)
		case "detail":
			return s.showIPsec(ctx, true)
		case "bgp routes":
			return s.showBGPRoutes(ctx)
		}
		return usagef("show ipsec %q: use show ipsec [detail], or show ipsec bgp routes", strings.Join(args[1:], " "))
	case "sslvpn":
		switch strings.Join(args[1:], " ") {
		case "":
			return s.showSSLVPN(ctx)
		case "sessions":
			return s.showSessions(ctx, false)
		case "sessions detail":
			return s.showSessions(ctx, true)
		}
		return usagef("show sslvpn %q: use show sslvpn [sessions [detail]]", strings.Join(args[1:], " "))
	case "log":
		return s.showLog(ctx, args[1:])
	case "interfaces":
		if len(args) > 1 {
			return usagef("show interfaces takes no arguments")
		}
		return s.showInterfaces(ctx)
	case "status":
		raw, err := s.api.Status(ctx)
		if err != nil {
			return err
		}
		_, err = s.out.Write(raw)
		return err
	}
	return usagef("show %q: use configuration, system commit or status", args[0])
}

func (s *Shell) showSSLVPN(ctx context.Context) error {
	out, err := s.api.SSLVPNStatus(ctx)
	if err != nil {
		return err
	}
	if len(out.Servers) == 0 {
		fmt.Fprintln(s.out, "No SSL-VPN server is running.")
		return nil
	}
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVER\tSESSIONS\tPOOL\tIN USE\tREFUSED\tFAILED")
	for _, sv := range out.Servers {
		fmt.Fprintf(w, "%s\t%d/%d\t%s\t%d/%d\t%d\t%d\n", sv.Name, sv.Sessions, sv.MaxSessions, sv.Pool, sv.PoolInUse,
			sv.PoolCapacity, sum(sv.Refused), sum(sv.FailedHandshakes))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// What the totals are made of, and the CRLs, as wrapped lines: reasons and issuers have no bounded width.
	for _, sv := range out.Servers {
		if len(sv.Refused) > 0 || len(sv.FailedHandshakes) > 0 || len(sv.CRLs) > 0 {
			fmt.Fprintf(s.out, "\nServer %s:\n", sv.Name)
		}
		writeCounts(s.out, "refused", sv.Refused)
		writeCounts(s.out, "failed handshakes", sv.FailedHandshakes)
		for _, crl := range sv.CRLs {
			fmt.Fprintf(s.out, "  CRL of %s\n", crl.Issuer)
			next := "no next update"
			if !crl.NextUpdate.IsZero() {
				next = "next update " + crl.NextUpdate.Local().Format(time.DateTime)
			}
			fmt.Fprintf(s.out, "    number %s, %d revoked, %s\n", orDash(crl.Number), crl.Revoked, next)
			if crl.Stale {
				fmt.Fprintf(s.out, "    STALE for %s: still in force; load a newer CRL\n", time.Since(crl.NextUpdate).Round(time.Minute))
			}
		}
	}
	return nil
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// writeCounts writes "  what: k=v k=v …" in key order, wrapped at 80 columns, nothing when m is empty.
func writeCounts(out io.Writer, what string, m map[string]uint64) {
	if len(m) == 0 {
		return
	}
	line := "  " + what + ":"
	for _, k := range slices.Sorted(maps.Keys(m)) {
		f := fmt.Sprintf(" %s=%d", k, m[k])
		if len(line)+len(f) > 80 {
			fmt.Fprintln(out, line)
			line = strings.Repeat(" ", 4)
		}
		line += f
	}
	fmt.Fprintln(out, line)
}

// showImage: show system image — the two root slots.
func (s *Shell) showImage(ctx context.Context) error {
	st, err := s.api.SystemImage(ctx)
	if err != nil {
		return err
	}
	if !st.Appliance {
		fmt.Fprintln(s.out, "Not running from an appliance image: no system image slots.")
		return nil
	}
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SLOT\tVERSION\tSTATE")
	for _, sl := range st.Slots {
		var state []string
		if sl.Running {
			state = append(state, "running")
		}
		if sl.Default {
			state = append(state, "default")
		}
		if sl.Trial {
			state = append(state, "next boot, on trial")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", strings.ToUpper(sl.Name), orDash(sl.Version), orDash(strings.Join(state, ", ")))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if st.TrialBoot {
		fmt.Fprintln(s.out, "This boot is a trial not kept yet: the next boot returns to the default slot.")
	}
	return nil
}

// showSessions: show sslvpn sessions — one line per session within 80 columns (the ID's first 8 characters,
// which request sslvpn session disconnect takes); detail adds the rest.
func (s *Shell) showSessions(ctx context.Context, detail bool) error {
	out, err := s.api.SSLVPNSessions(ctx)
	if err != nil {
		return err
	}
	if len(out.Sessions) == 0 {
		fmt.Fprintln(s.out, "No SSL-VPN session.")
		return nil
	}
	if detail {
		for _, ss := range out.Sessions {
			fmt.Fprintf(s.out, "Session %s\n", ss.ID)
			field := func(label, format string, args ...any) {
				fmt.Fprintf(s.out, "  %-12s %s\n", label, fmt.Sprintf(format, args...))
			}
			field("server", "%s", ss.Server)
			field("user", "%s (group %s)", ss.User, orDash(ss.Group))
			field("protocol", "%s", ss.Protocol)
			if ss.DTLS {
				field("transport", "DTLS")
			}
			field("address", "%s", ss.Address)
			field("remote", "%s", ss.Remote)
			field("cipher", "%s", orDash(ss.Cipher))
			if ss.CertSerial != "" {
				field("certificate", "serial %s", ss.CertSerial)
			}
			field("since", "%s (%s)", ss.Since.Local().Format(time.DateTime), since(ss.Since))
			field("bytes", "%d in, %d out", ss.BytesIn, ss.BytesOut)
			field("forbidden", "%d packets to networks not given to it, dropped", ss.Forbidden)
		}
		return nil
	}
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	server := ""
	for _, ss := range out.Sessions {
		if ss.Server != server || server == "" {
			if server != "" {
				fmt.Fprintln(w)
			}
			server = ss.Server
			fmt.Fprintf(w, "Server %s:\n", server)
			fmt.Fprintln(w, "ID\tUSER\tADDRESS\tPROTOCOL\tCIPHER\tUP\tIN/OUT")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s/%s\n", shortID(ss.ID), ss.User, ss.Address, ss.Protocol, orDash(ss.Cipher),
			since(ss.Since), humanBytes(ss.BytesIn), humanBytes(ss.BytesOut))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// A client sending where it was not given is worth a line of its own (a misconfigured client, or a probe).
	for _, ss := range out.Sessions {
		if ss.Forbidden > 0 {
			fmt.Fprintf(s.out, "%s (%s): %d packets to networks not given to it, dropped\n", shortID(ss.ID), ss.User, ss.Forbidden)
		}
	}
	return nil
}

// shortID is the first 8 characters of a session ID: unique enough to name a session at the console.
func shortID(id string) string { return id[:min(len(id), 8)] }

// since is how long ago t was, in at most two units: 45s, 12m30s, 3h05m, 2d04h.
func since(t time.Time) string {
	d := max(time.Since(t), 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// showInterfaces: one line per interface (more for its further addresses), the addresses last so that only a
// long IPv6 address may pass 80 columns.
func (s *Shell) showInterfaces(ctx context.Context) error {
	out, err := s.api.Interfaces(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "INTERFACE\tSTATE\tMTU\tRX\tTX\tERR/DROP\tADDRESSES")
	for _, ifc := range out.Interfaces {
		state := "down"
		switch {
		case ifc.Up && ifc.Running:
			state = "up"
		case ifc.Up:
			state = "no-carrier"
		}
		first := "-"
		if len(ifc.Addresses) > 0 {
			first = ifc.Addresses[0]
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%d/%d\t%s\n", ifc.Name, state, ifc.MTU, humanBytes(ifc.RxBytes), humanBytes(ifc.TxBytes),
			ifc.RxErrors+ifc.TxErrors, ifc.RxDropped+ifc.TxDropped, first)
		for _, a := range ifc.Addresses[min(1, len(ifc.Addresses)):] {
			fmt.Fprintf(w, "\t\t\t\t\t\t%s\n", a)
		}
	}
	return w.Flush()
}

// logComponents are the components torided logs as.
var logComponents = []string{"api", "ipsec", "ntp", "sslvpn", "store", "system"}

// showLog: show log [COMPONENT] [lines N].
func (s *Shell) showLog(ctx context.Context, args []string) error {
	component, lines := "", 50
	if len(args) > 0 && slices.Contains(logComponents, args[0]) {
		component, args = args[0], args[1:]
	}
	switch {
	case len(args) == 2 && args[0] == "lines":
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			return usagef("show log lines %q: give a number of at least 1", args[1])
		}
		lines = n
	case len(args) != 0:
		return usagef("show log [%s] [lines N]", strings.Join(logComponents, "|"))
	}
	out, err := s.api.Log(ctx, component, lines)
	if err != nil {
		return err
	}
	if len(out.Lines) == 0 {
		fmt.Fprintln(s.out, "No log lines.")
	}
	for _, e := range out.Lines {
		fmt.Fprintln(s.out, e.String())
	}
	return nil
}

// generate: generate password-hash | generate api-key NAME.
func (s *Shell) generate(ctx context.Context, args []string) error {
	switch {
	case len(args) == 1 && args[0] == "password-hash":
		pw, err := readSecret(s.stdin, s.errOut, "Password: ")
		if err != nil {
			return err
		}
		if len(pw) < 8 {
			return usagef("the password is shorter than 8 characters")
		}
		hash, err := bcrypt.GenerateFromPassword(pw, 12)
		if err != nil {
			return err
		}
		fmt.Fprintln(s.out, string(hash))
		return nil
	case (len(args) == 2 || len(args) == 3 && args[2] == "read-only") && args[0] == "api-key":
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return err
		}
		key := base64.RawURLEncoding.EncodeToString(raw)
		sum := sha256.Sum256([]byte(key))
		ch, err := s.api.Set(ctx, []string{"api", "keys", args[1], "key-sha256", hex.EncodeToString(sum[:])})
		if err != nil {
			return err
		}
		role := "admin"
		if len(args) == 3 {
			role = args[2]
		}
		if ch, err = s.api.Set(ctx, []string{"api", "keys", args[1], "role", role}); err != nil {
			return err
		}
		s.changed = ch.Changed
		fmt.Fprintf(s.out, "%s\n", key)
		fmt.Fprintf(s.errOut, "API key %s (%s) is in the candidate; commit to use it. The key above is shown only now: send it as 'Authorization: Bearer KEY'.\n", args[1], role)
		return nil
	}
	return usagef("generate password-hash | generate api-key NAME [read-only]")
}

// readSecret reads a line without echo from a terminal, or plainly from a pipe.
func readSecret(in io.Reader, prompt io.Writer, what string) ([]byte, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, what)
		defer fmt.Fprintln(prompt)
		return term.ReadPassword(int(f.Fd()))
	}
	if in == nil {
		return nil, errors.New("reading the password: no input")
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}

// importFile: import aws-vpn FILE [flags].
func (s *Shell) importFile(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "aws-vpn" {
		return usagef("import what? import aws-vpn FILE [--local-networks CIDR,…] [--remote-networks CIDR,…] [--name NAME]")
	}
	fs := flag.NewFlagSet("import aws-vpn", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	local := fs.String("local-networks", "", "this site's networks, comma-separated")
	remote := fs.String("remote-networks", "", "the cloud's networks, comma-separated (static routing)")
	name := fs.String("name", "", "the connection's name (default: from the file)")
	localAddr := fs.String("local-address", "", "this appliance's outside address, when a NAT sits in front of it")
	// The file may come before or after the flags.
	var file string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return usagef("import aws-vpn: %v", err)
		}
		rest = fs.Args()
		if len(rest) > 0 {
			if file != "" {
				return usagef("import aws-vpn takes one file, got %q and %q", file, rest[0])
			}
			file, rest = rest[0], rest[1:]
		}
	}
	if file == "" {
		return usagef("import aws-vpn needs the configuration file downloaded from the cloud")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	q := url.Values{}
	for k, v := range map[string]string{"local_networks": *local, "remote_networks": *remote, "name": *name, "local_address": *localAddr} {
		if v != "" {
			q.Set(k, v)
		}
	}
	out, err := s.api.ImportAWSVPN(ctx, data, q)
	if err != nil {
		return err
	}
	s.changed = out.Changed
	for _, l := range out.Commands {
		fmt.Fprintln(s.out, l)
	}
	fmt.Fprintf(s.out, "Imported %d tunnel(s) as connection %s into the candidate; `toride commit` applies it.\n", out.Tunnels, out.Name)
	return nil
}

// showIPsec: show ipsec — one line per tunnel, within 80 columns; detail adds everything the engine knows.
func (s *Shell) showIPsec(ctx context.Context, detail bool) error {
	out, err := s.api.IPsecStatus(ctx)
	if err != nil {
		return err
	}
	if !out.Running {
		fmt.Fprintln(s.out, "No IPsec connection is configured.")
		return nil
	}
	if detail {
		s.writeIPsecDetail(out.Connections)
	} else {
		w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		for i, conn := range out.Connections {
			if i > 0 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "Connection %s:\n", conn.Name)
			fmt.Fprintf(w, "TUNNEL\tINTERFACE\tPEER\tSTATE\tIKE/CHILD SA\tLOSS\n")
			for _, t := range conn.Tunnels {
				name := t.Name
				if t.Active {
					name += "*"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s/%s\t%.0f%%\n", name, orDash(t.Interface), t.RemoteAddress, t.State,
					t.IKESA, t.ChildSA, t.ProbeLoss*100)
			}
		}
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(s.out, "(* carries the traffic; show ipsec detail: counters, probes, failovers)")
	}
	fmt.Fprintf(s.out, "(backend: %s, %s)\n", out.Backend, out.Mode)
	for _, conn := range out.Connections {
		for _, t := range conn.Tunnels {
			if b := t.BGP; b != nil {
				up := ""
				if b.State == "established" {
					up = " " + (time.Duration(b.UptimeSeconds) * time.Second).String()
				}
				fmt.Fprintf(s.out, "BGP %s %s: %s%s, routes %d in %d out, pref %d, prepend %d\n",
					conn.Name, t.Name, b.State, up, b.PrefixesReceived, b.PrefixesAdvertised, b.LocalPreference, b.ASPathPrepend)
			}
		}
	}
	for _, p := range out.BGPProblems {
		fmt.Fprintf(s.out, "BGP problem: %s\n", p)
	}
	return nil
}

// writeIPsecDetail prints each tunnel as a block of labelled lines: every field fits 80 columns however long.
func (s *Shell) writeIPsecDetail(conns []ike.ConnectionStatus) {
	for _, conn := range conns {
		fmt.Fprintf(s.out, "Connection %s: %d failover(s), %d failback(s)\n", conn.Name, conn.Failovers, conn.Failbacks)
		for _, t := range conn.Tunnels {
			active := ""
			if t.Active {
				active = ", carrying the traffic"
			}
			fmt.Fprintf(s.out, "  Tunnel %s: %s%s\n", t.Name, t.State, active)
			field := func(label, format string, args ...any) {
				fmt.Fprintf(s.out, "    %-14s %s\n", label, fmt.Sprintf(format, args...))
			}
			field("interface", "%s", orDash(t.Interface))
			field("peer", "%s", t.RemoteAddress)
			field("IKE SA", "%s %s", t.IKESA, t.IKEAlgorithms)
			field("CHILD SA", "%s %s", t.ChildSA, t.ChildAlgorithms)
			nat := "none"
			if t.NATDetected {
				nat = "detected"
			}
			if t.UDPEncap {
				nat += ", ESP in UDP 4500"
			}
			field("NAT", "%s", nat)
			answered := "not answered yet"
			if t.ProbeAnswered {
				answered = "answered"
			}
			field("probes", "%d sent, %.0f%% lost, RTT %s, %s", t.ProbesSent, t.ProbeLoss*100, rtt(t.ProbeRTTMillis), answered)
			field("in", "%s in %d packets", humanBytes(t.BytesIn), t.PacketsIn)
			field("out", "%s in %d packets", humanBytes(t.BytesOut), t.PacketsOut)
			field("failovers", "%d, restarts %d", t.Failovers, t.Restarts)
			if t.ReplayDrops+t.IntegrityFailures+t.KernelEvents > 0 || t.Interface != "" {
				field("kernel", "%d replay drops, %d integrity failures, %d events", t.ReplayDrops, t.IntegrityFailures, t.KernelEvents)
			}
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-" // e.g. a policy-based tunnel has no interface of its own
	}
	return s
}

func rtt(ms float64) string {
	if ms == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", ms)
}

// humanBytes is n in B, K, M, G, T (powers of 1024) with two or three digits, short enough for a table cell.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v < 10 {
		return fmt.Sprintf("%.1f%c", v, "KMGT"[exp])
	}
	return fmt.Sprintf("%.0f%c", v, "KMGT"[exp])
}

// showBGPRoutes: show ipsec bgp routes — every path the BGP sessions learned, best first per prefix.
func (s *Shell) showBGPRoutes(ctx context.Context) error {
	out, err := s.api.IPsecStatus(ctx)
	if err != nil {
		return err
	}
	if len(out.BGPRoutes) == 0 {
		fmt.Fprintln(s.out, "No route learned over BGP.")
		return nil
	}
	w := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "PREFIX\tNEXT HOP\tVIA\tBEST\tLOCAL PREF\tAS PATH\n")
	for _, r := range out.BGPRoutes {
		best := ""
		if r.Best {
			best = "*"
		}
		path := make([]string, len(r.ASPath))
		for i, as := range r.ASPath {
			path[i] = strconv.FormatUint(uint64(as), 10)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Prefix, r.NextHop, r.Neighbor, best, r.LocalPreference, strings.Join(path, " "))
	}
	return w.Flush()
}

func (s *Shell) commit(ctx context.Context, minutes int, comment string) error {
	out, err := s.api.Commit(ctx, comment, minutes)
	if err != nil {
		return err
	}
	s.printCommit(out)
	s.refreshChanged(ctx)
	return nil
}

func (s *Shell) printCommit(out api.Committed) {
	if !out.Committed {
		fmt.Fprintln(s.out, capitalize(out.Message)+".")
		return
	}
	fmt.Fprintf(s.out, "Committed revision %d.\n", out.Commit.Revision)
	if out.ConfirmBy != nil {
		fmt.Fprintf(s.out, "Run `toride confirm` before %s or the previous configuration comes back.\n", out.ConfirmBy.Local().Format(time.TimeOnly))
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
