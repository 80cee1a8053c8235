package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"toride/appliance/api"
	"toride/appliance/config"
)

// Item is one word allowed at a point of a command line, for ? and TAB.
type Item struct {
	// Word is the word itself, or, between < and >, the form of a value the admin makes up (<x.x.x.x/n>,
	// <1-65535>, <name>), which TAB does not insert.
	Word string
	Help string
}

// Literal reports whether the item is a word TAB can insert.
func (it Item) Literal() bool { return !strings.HasPrefix(it.Word, "<") }

var enter = Item{"<Enter>", "Run the command"}

// command is a word of the shell's own grammar: its help, and what may follow it.
type command struct {
	word string
	help string
	next []command
	// schema: the words after it are a configuration path (relative to the edit level in configuration mode).
	schema bool
	// arg: the form of a free argument that follows (<N>, <file>), if any.
	arg string
	// options: the words of next may come in any order (show configuration candidate json).
	options bool
	// args: the arguments that follow, in order, each a form (<server>, <user>, <file>, <id>); those after
	// optional may be left out.
	args     []string
	optional int
	// udp: proto udp may end the line.
	udp bool
}

// argValues are where the configuration lists the names an argument may take, for TAB.
var argValues = map[string][]string{"<server>": {"sslvpn", "servers"}, "<user>": {"users"}}

var requestCommands = []command{
	{word: "pki", help: "Certificates and CRLs", next: []command{
		{word: "certificate", help: "Users' client certificates", next: []command{
			{word: "issue", help: "Issue a client certificate from the server's CA", args: []string{"<server>", "<user>"}, optional: 2},
			{word: "revoke", help: "Revoke a user's certificates and cut their sessions", args: []string{"<server>", "<user>"}, optional: 2},
		}},
		{word: "crl", help: "Certificate revocation lists", next: []command{
			{word: "load", help: "Load a CA's CRL file (PEM or DER) on a server", args: []string{"<server>", "<file>"}, optional: 2},
		}},
	}},
	{word: "system", help: "The appliance itself", next: []command{
		{word: "image", help: "System images", next: []command{
			{word: "install", help: "Write a root image into the other slot, to try at the next boot (SHA-256 from FILE.sha256 unless given)",
				args: []string{"<file>", "<sha256>"}, optional: 1},
		}},
		{word: "poweroff", help: "Power the appliance off"},
		{word: "reboot", help: "Reboot the appliance"},
	}},
	{word: "sslvpn", help: "SSL-VPN users and sessions", next: []command{
		{word: "otp", help: "Users' one-time password (TOTP) keys", next: []command{
			{word: "delete", help: "Delete a user's TOTP key", args: []string{"<server>", "<user>"}, optional: 2},
			{word: "generate", help: "Issue a TOTP key: secret, URI and QR code, shown once", args: []string{"<server>", "<user>"}, optional: 2},
		}},
		{word: "session", help: "Connected sessions", next: []command{
			{word: "disconnect", help: "Cut a session", args: []string{"<id>"}, optional: 1},
		}},
	}},
}

var exportCommands = []command{
	{word: "sslvpn", help: "SSL-VPN client files", next: []command{
		{word: "client-config", help: "A user's OpenVPN profile (.ovpn), to a file or the screen",
			args: []string{"<server>", "<user>", "<file>"}, optional: 2, udp: true},
	}},
}

var showCommands = []command{
	{word: "configuration", help: "The running configuration (or candidate; json, commands)", options: true, next: []command{
		{word: "candidate", help: "The candidate instead of the running configuration"},
		{word: "commands", help: "As set lines"},
		{word: "json", help: "As JSON"},
		{word: "--show-secrets", help: "Secrets in clear (logged)"},
	}},
	{word: "ipsec", help: "IPsec connections and their tunnels", next: []command{
		{word: "bgp", help: "BGP over the tunnels", next: []command{{word: "routes", help: "The routes learned over BGP"}}},
		{word: "detail", help: "Every tunnel's algorithms, probes, counters and failovers"},
	}},
	{word: "sslvpn", help: "SSL-VPN servers", next: []command{{word: "sessions", help: "Connected SSL-VPN sessions", next: []command{
		{word: "detail", help: "Every field of each session"},
	}}}},
	{word: "interfaces", help: "Network interfaces"},
	{word: "log", help: "torided's recent log", next: logWords()},
	{word: "status", help: "The appliance and its components"},
	{word: "system", help: "System information", next: []command{
		{word: "commit", help: "The commit archive, newest (0) first"},
		{word: "image", help: "The root slots A and B: their versions, which runs, which boots next"},
	}},
}

// logWords are what may follow show log: a component, then lines N.
func logWords() []command {
	lines := command{word: "lines", help: "How many lines (50 unless told)", arg: "<N>"}
	out := []command{lines}
	for _, c := range logComponents {
		out = append(out, command{word: c, help: "Only the " + c + " component's lines", next: []command{lines}})
	}
	return out
}

var candidateCommands = []command{
	{word: "commit", help: "Validate and apply the candidate", arg: "<comment>"},
	{word: "commit-confirm", help: "Commit; reverts unless confirmed within MINUTES", arg: "<minutes>"},
	{word: "compare", help: "Candidate against running (or against commit N)", arg: "<N>"},
	{word: "confirm", help: "Keep a commit-confirm"},
	{word: "discard", help: "Throw away the candidate's changes"},
	{word: "rollback", help: "Commit archive entry N again", arg: "<N>"},
}

var operationalCommands = sortCommands(append(slices.Clone(candidateCommands),
	command{word: "configure", help: "Enter configuration mode"},
	command{word: "delete", help: "Remove from the candidate", schema: true},
	command{word: "exit", help: "Leave the console"},
	command{word: "generate", help: "Generate a password hash or an API key", next: []command{
		{word: "api-key", help: "Make an API key (admin, or read-only), put its hash in the candidate",
			args: []string{"<name>", "read-only"}, optional: 1},
		{word: "password-hash", help: "Read a password and print its bcrypt hash"},
	}},
	command{word: "help", help: "The commands"},
	command{word: "import", help: "Import a cloud's VPN configuration file", next: []command{
		{word: "aws-vpn", help: "The AWS VPN connection's Generic or XML file", arg: "<file>"},
	}},
	command{word: "set", help: "Change the candidate", schema: true},
	command{word: "show", help: "Show the configuration or the state", next: showCommands},
	command{word: "request", help: "Act on users, sessions, certificates and the system", next: requestCommands},
	command{word: "export", help: "Write a client's files", next: exportCommands},
))

var configurationCommands = sortCommands(append(slices.Clone(candidateCommands),
	command{word: "delete", help: "Remove from the candidate", schema: true},
	command{word: "edit", help: "Move the edit level down", schema: true},
	command{word: "exit", help: "Leave configuration mode (or go to the top level)", next: []command{
		{word: "discard", help: "Throw the uncommitted changes away and leave"},
	}},
	command{word: "help", help: "The commands of configuration mode"},
	command{word: "load", help: "Replace the candidate with a file of set lines", arg: "<file>"},
	command{word: "run", help: "Run an operational command"},
	command{word: "save", help: "Write the candidate as set lines", arg: "<file>"},
	command{word: "set", help: "Change the candidate", schema: true},
	command{word: "show", help: "The candidate here, changes marked (+ - >)", schema: true},
	command{word: "top", help: "Go to the top level"},
	command{word: "up", help: "Go one level up"},
))

func sortCommands(c []command) []command {
	slices.SortFunc(c, func(a, b command) int { return strings.Compare(a.word, b.word) })
	return c
}

// Complete returns what may come at the end of line (the text before the cursor): partial is the word being
// typed ("" after a space) and items the words allowed there, those starting with partial. An error says which
// word before it is wrong.
func (s *Shell) Complete(ctx context.Context, line string) (partial string, items []Item, err error) {
	words, err := config.Split(line)
	if err != nil {
		return "", nil, err
	}
	if len(words) > 0 && !strings.HasSuffix(line, " ") && !strings.HasSuffix(line, "\t") {
		partial, words = words[len(words)-1], words[:len(words)-1]
	}
	cmds, base := operationalCommands, []string(nil)
	if s.configuring {
		cmds, base = configurationCommands, s.level
		if len(words) > 0 && words[0] == "run" {
			cmds, base, words = operationalCommands, nil, words[1:]
		}
	}
	all, err := s.allowed(ctx, cmds, base, words)
	if err != nil {
		return partial, nil, err
	}
	for _, it := range all {
		if it == enter && partial != "" {
			continue // a word is being typed: Enter would not run this line
		}
		if !it.Literal() || strings.HasPrefix(it.Word, partial) {
			items = append(items, it)
		}
	}
	return partial, items, nil
}

// allowed is every item that may follow words in the grammar cmds.
func (s *Shell) allowed(ctx context.Context, cmds []command, base, words []string) ([]Item, error) {
	var items []Item
	options := false
	for i, w := range words {
		var cmd *command
		for j := range cmds {
			if cmds[j].word == w {
				cmd = &cmds[j]
			}
		}
		switch {
		case cmd == nil:
			return nil, fmt.Errorf("%q is not allowed here; one of %s", w, strings.Join(commandWords(cmds), ", "))
		case cmd.schema:
			return s.schemaItems(ctx, w, append(slices.Clone(base), words[i+1:]...))
		case cmd.args != nil:
			return s.argItems(ctx, cmd, words[i+1:]), nil
		case cmd.arg != "":
			if i+1 < len(words) && cmd.arg != "<comment>" {
				return []Item{enter}, nil
			}
			return []Item{{cmd.arg, cmd.help}, enter}, nil
		case options:
			continue // one more option of the same list
		}
		cmds, options = cmd.next, cmd.options
	}
	for _, c := range cmds {
		items = append(items, Item{c.word, c.help})
	}
	if len(words) > 0 {
		items = append(items, enter)
	}
	return items, nil
}

// argItems is what may follow the arguments given to a command with args: the next argument's form and the
// configured names it may take, proto udp at the end, Enter once the required ones are there.
func (s *Shell) argItems(ctx context.Context, cmd *command, given []string) []Item {
	n := len(given)
	if cmd.udp && n > 0 && given[n-1] == "proto" {
		return []Item{{"udp", "The profile connects over UDP"}, {"tcp", "The profile connects over TCP (the default)"}}
	}
	if cmd.udp && n >= 2 && given[n-2] == "proto" {
		return []Item{enter}
	}
	var items []Item
	if n < len(cmd.args) {
		form := cmd.args[n]
		items = append(items, Item{form, cmd.help})
		if path, ok := argValues[form]; ok {
			if d, err := s.api.Describe(ctx, path); err == nil {
				for _, v := range d.Values {
					items = append(items, Item{v, ""})
				}
			}
		}
	}
	if n >= cmd.optional {
		if cmd.udp {
			items = append(items, Item{"proto", "proto udp: the profile connects over UDP"})
		}
		items = append(items, enter)
	}
	return items
}

func commandWords(cmds []command) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.word)
	}
	return out
}

// schemaItems is what may follow path in a set, delete, show or edit command: the schema's children, a tag node's
// existing keys, a leaf's enum or the form of its value.
func (s *Shell) schemaItems(ctx context.Context, verb string, path []string) ([]Item, error) {
	d, err := s.api.Describe(ctx, path)
	if err != nil {
		// Past a value: nothing more but Enter, if the node before it is a leaf.
		var ae *api.Error
		if len(path) > 0 && errors.As(err, &ae) {
			if p, perr := s.api.Describe(ctx, path[:len(path)-1]); perr == nil && (p.Kind == "leaf" || p.Kind == "multi" || p.Kind == "flag") {
				return []Item{enter}, nil
			}
		}
		return nil, err
	}
	if len(path) > 0 && d.Name != path[len(path)-1] {
		return []Item{enter}, nil // describe stops at a leaf: the words after it are its value
	}
	var items []Item
	switch d.Kind {
	case "container":
		for _, c := range d.ChildNodes {
			items = append(items, Item{c.Name, c.Help})
		}
	case "tag":
		items = append(items, Item{d.Format, d.Help})
		for _, v := range d.Values {
			items = append(items, Item{v, ""})
		}
	case "leaf", "multi":
		if verb == "set" && len(d.Enum) > 0 {
			for _, e := range d.Enum {
				items = append(items, Item{e, ""})
			}
			break
		}
		if verb != "set" {
			for _, v := range d.Values {
				items = append(items, Item{v, "the value set now"})
			}
		}
		if verb == "set" || len(items) == 0 {
			items = append(items, Item{d.Format, valueHelp(d)})
		}
	case "flag":
		items = append(items, Item{"<Enter>", d.Help})
	}
	if len(path) > 0 && verb != "set" {
		items = append(items, enter)
	}
	return items, nil
}

// valueHelp is a leaf's help with its default.
func valueHelp(d api.Description) string {
	h := d.Help
	if d.Default != "" {
		h += " (default " + d.Default + ")"
	}
	return h
}

// WriteHelp prints items as `?` shows them, one per line, fitting 80 columns.
func WriteHelp(w io.Writer, items []Item) {
	if len(items) == 0 {
		fmt.Fprintln(w, "No completions here.")
		return
	}
	width := 0
	for _, it := range items {
		width = max(width, len(it.Word))
	}
	width = min(width, 28)
	fmt.Fprintln(w, "Possible completions:")
	for _, it := range items {
		help := it.Help
		room := 80 - 2 - max(width, len(it.Word)) - 2
		if r := []rune(help); len(r) > room {
			help = string(r[:max(room-1, 0)]) + "…"
		}
		fmt.Fprintf(w, "  %-*s  %s\n", width, it.Word, help)
	}
}
