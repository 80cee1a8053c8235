// Command toride is the Toride appliance's client: one-shot commands (`toride show configuration`, `toride set …`,
// `toride commit`) and, with no command, a line-by-line shell reading the same commands. It talks to torided's API
// socket and never touches system state itself.
//
// Exit status: 0 on success, 1 when torided refused the command or cannot be reached, 2 for bad usage.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"toride/appliance/api"
	"toride/appliance/config"
)

const defaultSocket = "/run/toride/api.sock"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usageError is a command line that does not fit; it exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

const usage = `usage: toride [--socket PATH] [COMMAND]

Commands:
  show configuration [json|commands] [candidate] [--show-secrets]
                                                   the running (or candidate) configuration; secrets
                                                   are **** unless --show-secrets (torided logs who asked)
  show system commit                               the commit archive, newest (0) first
  show status                                      the appliance and its components
  show sslvpn [sessions]                           SSL-VPN servers, or their connected sessions
  show ipsec                                       IPsec connections and their tunnels
  generate password-hash                           read a password (no echo) and print its bcrypt hash
  generate api-key NAME                            make an API key, put its hash in the candidate, print the key once
  import aws-vpn FILE [--local-networks CIDR,…] [--remote-networks CIDR,…] [--name NAME] [--local-address ADDR]
                                                   put the cloud's VPN configuration file into the candidate
  set PATH... VALUE                                change the candidate
  delete PATH...                                   remove from the candidate
  compare [N]                                      candidate against running, or against commit N
  commit [COMMENT]                                 validate and apply the candidate
  commit-confirm MINUTES [COMMENT]                 commit, reverting by itself unless confirmed in time
  confirm                                          keep a commit-confirm
  discard                                          throw away the candidate's changes
  rollback N                                       commit archive entry N again
With no command, toride reads commands line by line (a shell).

The socket is --socket, else $TORIDE_SOCKET, else ` + defaultSocket + `.
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("toride", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "torided's API socket")
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := *socket
	if path == "" {
		path = os.Getenv("TORIDE_SOCKET")
	}
	if path == "" {
		path = defaultSocket
	}
	cli := &cli{c: api.NewClient(path), out: stdout, errOut: stderr, stdin: stdin}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if fs.NArg() == 0 {
		interactive := false
		if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			interactive = true
		}
		return cli.shell(ctx, stdin, stderr, interactive)
	}
	return report(cli.exec(ctx, fs.Args()), stderr)
}

func report(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "toride: %s\n", ue.msg)
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

type cli struct {
	c      *api.Client
	out    io.Writer
	errOut io.Writer
	stdin  io.Reader
}

func (c *cli) exec(ctx context.Context, args []string) error {
	switch args[0] {
	case "show":
		return c.show(ctx, args[1:])
	case "set", "delete":
		if len(args) < 2 {
			return usagef("%s needs a path, e.g. %s system host-name", args[0], args[0])
		}
		return c.c.Do(ctx, "POST", "/api/v1/config/"+args[0], map[string]any{"path": args[1:]}, nil)
	case "commit":
		return c.commit(ctx, 0, strings.Join(args[1:], " "))
	case "commit-confirm":
		if len(args) < 2 {
			return usagef("commit-confirm needs the minutes to wait, e.g. commit-confirm 5")
		}
		m, err := strconv.Atoi(args[1])
		if err != nil || m < 1 {
			return usagef("commit-confirm %q: the minutes must be a whole number of at least 1", args[1])
		}
		return c.commit(ctx, m, strings.Join(args[2:], " "))
	case "confirm":
		if err := c.c.Do(ctx, "POST", "/api/v1/config/confirm", nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "Confirmed; the configuration stays.")
		return nil
	case "discard":
		if err := c.c.Do(ctx, "POST", "/api/v1/config/discard", nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.out, "Changes discarded.")
		return nil
	case "compare":
		q := ""
		if len(args) > 1 {
			if _, err := strconv.Atoi(args[1]); err != nil {
				return usagef("compare %q: give a commit number from `show system commit`", args[1])
			}
			q = "?rev=" + args[1]
		}
		var out struct{ Diff []string }
		if err := c.c.Do(ctx, "GET", "/api/v1/config/compare"+q, nil, &out); err != nil {
			return err
		}
		if len(out.Diff) == 0 {
			fmt.Fprintln(c.out, "No changes.")
		}
		for _, l := range out.Diff {
			fmt.Fprintln(c.out, l)
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
		var out commitResult
		if err := c.c.Do(ctx, "POST", "/api/v1/config/rollback", map[string]int{"revision": n}, &out); err != nil {
			return err
		}
		c.printCommit(out)
		return nil
	case "import":
		return c.importFile(ctx, args[1:])
	case "generate":
		return c.generate(ctx, args[1:])
	case "help", "--help", "-h":
		fmt.Fprint(c.out, usage)
		return nil
	}
	return usagef("unknown command %q; try toride help", args[0])
}

func (c *cli) show(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usagef("show what? configuration, system commit or status")
	}
	switch args[0] {
	case "configuration", "config":
		format, source, secrets := "tree", "running", "hide"
		for _, a := range args[1:] {
			switch a {
			case "json", "commands", "tree":
				format = a
			case "candidate", "running":
				source = a
			case "--show-secrets":
				secrets = "show"
			default:
				return usagef("show configuration %q: use json, commands, candidate or --show-secrets", a)
			}
		}
		var raw []byte
		if err := c.c.Do(ctx, "GET", "/api/v1/config?source="+source+"&format="+format+"&secrets="+secrets, nil, &raw); err != nil {
			return err
		}
		switch format {
		case "json":
			_, err := c.out.Write(raw)
			return err
		case "commands":
			var out struct{ Commands []string }
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			for _, l := range out.Commands {
				fmt.Fprintln(c.out, l)
			}
		default:
			var out struct{ Tree string }
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			fmt.Fprint(c.out, out.Tree)
		}
		return nil
	case "system":
		if len(args) < 2 || args[1] != "commit" {
			return usagef("show system commit")
		}
		var out struct {
			Commits []struct {
				Index    int
				Revision int
				Time     time.Time
				Author   string
				Comment  string
			}
			PendingConfirm *struct {
				Revision int
				Deadline time.Time
			} `json:"pending_confirm"`
		}
		if err := c.c.Do(ctx, "GET", "/api/v1/config/commits", nil, &out); err != nil {
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
			fmt.Fprintln(c.out, line)
		}
		return nil
	case "ipsec":
		return c.showIPsec(ctx)
	case "sslvpn":
		if len(args) > 1 && args[1] == "sessions" {
			return c.showSessions(ctx)
		}
		return c.showSSLVPN(ctx)
	case "status":
		var raw []byte
		if err := c.c.Do(ctx, "GET", "/api/v1/status", nil, &raw); err != nil {
			return err
		}
		_, err := c.out.Write(raw)
		return err
	}
	return usagef("show %q: use configuration, system commit or status", args[0])
}

func (c *cli) showSSLVPN(ctx context.Context) error {
	var out struct {
		Servers []struct {
			Name, Pool string
			S          int            `json:"sessions"`
			Max        int            `json:"max_sessions"`
			InUse      int            `json:"pool_in_use"`
			Capacity   int            `json:"pool_capacity"`
			Refused    map[string]int `json:"refused"`
			Failed     map[string]int `json:"failed_handshakes"`
			CRLs       []struct {
				Issuer, Number string
				NextUpdate     time.Time `json:"next_update"`
				Revoked        int
				Stale          bool
			}
		}
	}
	if err := c.c.Do(ctx, "GET", "/api/v1/sslvpn/status", nil, &out); err != nil {
		return err
	}
	if len(out.Servers) == 0 {
		fmt.Fprintln(c.out, "No SSL-VPN server is running.")
		return nil
	}
	counts := func(m map[string]int) string {
		var f []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f = append(f, fmt.Sprintf("%s=%d", k, m[k]))
		}
		return strings.Join(f, " ")
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVER\tSESSIONS\tPOOL\tADDRESSES IN USE\tREFUSED\tFAILED HANDSHAKES")
	for _, s := range out.Servers {
		fmt.Fprintf(w, "%s\t%d/%d\t%s\t%d/%d\t%s\t%s\n", s.Name, s.S, s.Max, s.Pool, s.InUse, s.Capacity, counts(s.Refused), counts(s.Failed))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	header := false
	for _, s := range out.Servers {
		for _, crl := range s.CRLs {
			if !header {
				fmt.Fprintln(w, "\nSERVER\tCRL OF\tNUMBER\tREVOKED\tNEXT UPDATE\tSTATE")
				header = true
			}
			state, next := "current", "-"
			if !crl.NextUpdate.IsZero() {
				next = crl.NextUpdate.Local().Format(time.DateTime)
			}
			if crl.Stale {
				state = fmt.Sprintf("STALE for %s: still in force; load a newer CRL", time.Since(crl.NextUpdate).Round(time.Minute))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, crl.Issuer, crl.Number, crl.Revoked, next, state)
		}
	}
	return w.Flush()
}

func (c *cli) showSessions(ctx context.Context) error {
	var out struct {
		Sessions []struct {
			ID, Server, User, Protocol, Remote, Address, Cipher string
			Since                                               time.Time
			BytesIn                                             uint64 `json:"bytes_in"`
			BytesOut                                            uint64 `json:"bytes_out"`
		}
	}
	if err := c.c.Do(ctx, "GET", "/api/v1/sslvpn/sessions", nil, &out); err != nil {
		return err
	}
	if len(out.Sessions) == 0 {
		fmt.Fprintln(c.out, "No SSL-VPN session.")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVER\tUSER\tADDRESS\tPROTOCOL\tREMOTE\tCIPHER\tSINCE\tIN\tOUT\tID")
	for _, s := range out.Sessions {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Server, s.User, s.Address, s.Protocol, s.Remote, s.Cipher,
			s.Since.Local().Format("15:04:05"), s.BytesIn, s.BytesOut, s.ID)
	}
	return w.Flush()
}

// generate: generate password-hash | generate api-key NAME.
func (c *cli) generate(ctx context.Context, args []string) error {
	switch {
	case len(args) == 1 && args[0] == "password-hash":
		pw, err := readSecret(c.stdin, c.errOut, "Password: ")
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
		fmt.Fprintln(c.out, string(hash))
		return nil
	case len(args) == 2 && args[0] == "api-key":
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return err
		}
		key := base64.RawURLEncoding.EncodeToString(raw)
		sum := sha256.Sum256([]byte(key))
		path := []string{"api", "keys", args[1], "key-sha256", hex.EncodeToString(sum[:])}
		if err := c.c.Do(ctx, "POST", "/api/v1/config/set", map[string]any{"path": path}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.out, "%s\n", key)
		fmt.Fprintf(c.errOut, "API key %s is in the candidate; commit to use it. The key above is shown only now: send it as 'Authorization: Bearer KEY'.\n", args[1])
		return nil
	}
	return usagef("generate password-hash | generate api-key NAME")
}

// readSecret reads a line without echo from a terminal, or plainly from a pipe.
func readSecret(in io.Reader, prompt io.Writer, what string) ([]byte, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, what)
		defer fmt.Fprintln(prompt)
		return term.ReadPassword(int(f.Fd()))
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && line == "" {
		return nil, fmt.Errorf("reading the password: %w", err)
	}
	return []byte(strings.TrimRight(line, "\r\n")), nil
}

// importFile: import aws-vpn FILE [flags].
func (c *cli) importFile(ctx context.Context, args []string) error {
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
	var out struct {
		Name     string
		Tunnels  int
		Commands []string
		Message  string
	}
	if err := c.c.Do(ctx, "POST", "/api/v1/ipsec/import?"+q.Encode(), data, &out); err != nil {
		return err
	}
	for _, l := range out.Commands {
		fmt.Fprintln(c.out, l)
	}
	fmt.Fprintf(c.out, "Imported %d tunnel(s) as connection %s into the candidate; `toride commit` applies it.\n", out.Tunnels, out.Name)
	return nil
}

func (c *cli) showIPsec(ctx context.Context) error {
	var out struct {
		Running     bool
		Backend     string
		Mode        string
		Connections []struct {
			Name      string
			Failovers uint64
			Tunnels   []struct {
				Name          string
				RemoteAddress string `json:"remote_address"`
				Interface     string
				State         string
				Active        bool
				IKESA         string  `json:"ike_sa"`
				ChildSA       string  `json:"child_sa"`
				ProbeLoss     float64 `json:"probe_loss"`
				ProbeRTT      float64 `json:"probe_rtt_ms"`
				BytesIn       uint64  `json:"bytes_in"`
				BytesOut      uint64  `json:"bytes_out"`
				Failovers     uint64
			}
		}
	}
	if err := c.c.Do(ctx, "GET", "/api/v1/ipsec/status", nil, &out); err != nil {
		return err
	}
	if !out.Running {
		fmt.Fprintln(c.out, "No IPsec connection is configured.")
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "CONNECTION\tTUNNEL\tINTERFACE\tPEER\tSTATE\tACTIVE\tIKE SA\tCHILD SA\tPROBE LOSS\tRTT ms\tIN\tOUT\tFAILOVERS\n")
	for _, conn := range out.Connections {
		for _, t := range conn.Tunnels {
			active := ""
			if t.Active {
				active = "*"
			}
			ifname := t.Interface
			if ifname == "" {
				ifname = "-" // policy-based: the tunnel has no interface of its own
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t%.1f\t%d\t%d\t%d\n", conn.Name, t.Name, ifname, t.RemoteAddress, t.State, active,
				t.IKESA, t.ChildSA, t.ProbeLoss*100, t.ProbeRTT, t.BytesIn, t.BytesOut, t.Failovers)
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.out, "(backend: %s, %s)\n", out.Backend, out.Mode)
	return nil
}

type commitResult struct {
	Committed bool
	Message   string
	Commit    struct {
		Revision int
		Comment  string
	}
	ConfirmBy *time.Time `json:"confirm_by"`
}

func (c *cli) commit(ctx context.Context, minutes int, comment string) error {
	var out commitResult
	if err := c.c.Do(ctx, "POST", "/api/v1/config/commit", map[string]any{"comment": comment, "confirm_minutes": minutes}, &out); err != nil {
		return err
	}
	c.printCommit(out)
	return nil
}

func (c *cli) printCommit(out commitResult) {
	if !out.Committed {
		fmt.Fprintln(c.out, capitalize(out.Message)+".")
		return
	}
	fmt.Fprintf(c.out, "Committed revision %d.\n", out.Commit.Revision)
	if out.ConfirmBy != nil {
		fmt.Fprintf(c.out, "Run `toride confirm` before %s or the previous configuration comes back.\n", out.ConfirmBy.Local().Format(time.TimeOnly))
	}
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// shell reads commands line by line until end of input or exit. On a terminal (interactive) it prompts, and
// leaving it is a success whatever the admin typed before: each error was shown when it happened. Reading a
// script, it returns the status of the first command that failed, so a caller sees that a script went wrong.
func (c *cli) shell(ctx context.Context, stdin io.Reader, stderr io.Writer, interactive bool) int {
	if interactive {
		fmt.Fprintln(c.out, "Toride configuration shell. Type help for the commands, exit to leave.")
	}
	status := 0
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20)
	for {
		if interactive {
			fmt.Fprint(c.out, "toride# ")
		}
		if !sc.Scan() {
			break
		}
		words, err := config.Split(sc.Text())
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			if status == 0 {
				status = 2
			}
			continue
		}
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		if words[0] == "exit" || words[0] == "quit" {
			break
		}
		if rc := report(c.exec(ctx, words), stderr); rc != 0 && status == 0 {
			status = rc
		}
		if ctx.Err() != nil {
			return 1
		}
	}
	if interactive {
		fmt.Fprintln(c.out)
		return 0
	}
	return status
}
