// Package console is the appliance's local console: the `toride` shell that an admin types into at the serial
// line or screen, and the one-shot commands scripts run (`toride show ipsec`). It talks to torided only through
// the API (the API interface; Client over the unix socket) and never touches system state itself.
//
// The shell has two modes, as VyOS and Junos have: operational mode (show, commit, rollback, … and every one-shot
// command) and configuration mode (after configure: set, delete and show relative to an edit level, changed lines
// marked). Help (`?`) and completion (TAB) come from the schema through the describe endpoint. On a terminal the
// shell edits lines and keeps a history; reading a pipe it prints no prompt and returns the status of the first
// command that failed.
//
// A Shell is used by one goroutine at a time.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"toride/appliance/api"
	"toride/appliance/config"
)

// Options are what a Shell works with.
type Options struct {
	API    API
	Stdin  io.Reader // for commands that read a secret (generate password-hash)
	Stdout io.Writer
	Stderr io.Writer
	// Terminal, when set, says whether Stdout can draw a QR code, instead of asking whether it is a terminal.
	Terminal *bool
}

// Shell runs console commands. Its zero value is not usable; make one with New.
type Shell struct {
	api         API
	stdin       io.Reader
	out, errOut io.Writer

	configuring bool     // configuration mode
	level       []string // the edit level in configuration mode: node names and keys
	changed     bool     // the candidate differs from the running configuration, as last seen
	terminal    *bool    // whether out is a terminal that can draw a QR code; nil: ask the file
}

// New returns a Shell in operational mode.
func New(opts Options) *Shell {
	return &Shell{api: opts.API, stdin: opts.Stdin, out: opts.Stdout, errOut: opts.Stderr, terminal: opts.Terminal}
}

// Configuring reports whether the shell is in configuration mode, and its edit level.
func (s *Shell) Configuring() (bool, []string) { return s.configuring, slices.Clone(s.level) }

// Exec runs one command, given as words, in the current mode.
func (s *Shell) Exec(ctx context.Context, words []string) error {
	if s.configuring {
		return s.configCommand(ctx, words)
	}
	if words[0] == "configure" {
		if len(words) > 1 {
			return usagef("configure takes no arguments")
		}
		s.configuring, s.level = true, nil
		s.refreshChanged(ctx)
		return nil
	}
	return s.operational(ctx, words)
}

// Prompt is the prompt of the current mode: `toride> ` in operational mode, `toride(config)# ` in configuration
// mode, with a * when the candidate has uncommitted changes and the edit level after the mode.
func (s *Shell) Prompt() string {
	if !s.configuring {
		return "toride> "
	}
	mode := "config"
	if s.changed {
		mode += "*"
	}
	if len(s.level) > 0 {
		mode += " " + strings.Join(s.level, " ")
	}
	return "toride(" + mode + ")# "
}

// refreshChanged asks torided whether the candidate has uncommitted changes (for the prompt and exit). A failure
// leaves the last answer: the command that prompted the question has already reported its own result.
func (s *Shell) refreshChanged(ctx context.Context) {
	if !s.configuring {
		return
	}
	if d, err := s.api.Compare(ctx, -1); err == nil {
		s.changed = len(d.Diff) > 0
	}
}

// LineReader reads the shell's input one line at a time, with the prompt shown where there is someone to see it.
// It returns io.EOF at the end of input.
type LineReader interface {
	ReadLine(prompt string) (string, error)
}

// Run reads and runs commands until the end of input or exit. interactive means someone types at a terminal:
// leaving is then a success whatever failed on the way, since each error was shown when it happened. Reading a
// script, Run returns the status of the first command that failed (2 bad usage, 1 refused or unreachable), so
// the caller sees that the script went wrong.
func (s *Shell) Run(ctx context.Context, in LineReader, interactive bool) int {
	if interactive {
		fmt.Fprintln(s.out, "Toride console. Type ? or help for the commands, configure to change the configuration, exit to leave.")
	}
	status := 0
	for {
		line, err := in.ReadLine(s.Prompt())
		if errors.Is(err, errInterrupted) {
			continue // Ctrl-C drops the line being typed
		}
		if err != nil {
			break
		}
		words, err := config.Split(line)
		if err != nil {
			fmt.Fprintf(s.errOut, "error: %v\n", err)
			if status == 0 {
				status = 2
			}
			continue
		}
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		if !s.configuring && (words[0] == "exit" || words[0] == "quit") {
			break
		}
		err = s.Exec(ctx, words)
		if err != nil {
			s.pointAt(words, err)
		}
		if rc := Report(err, s.errOut); rc != 0 && status == 0 {
			status = rc
		}
		if ctx.Err() != nil {
			return 1
		}
	}
	if interactive {
		fmt.Fprintln(s.out)
		return 0
	}
	return status
}

// pointAt shows which word of a command an error is about: the word its message quotes, else, for a path that
// does not fit the schema, the end of the line (something is missing there).
func (s *Shell) pointAt(words []string, err error) { pointAt(s.errOut, words, err) }

func pointAt(w io.Writer, words []string, err error) {
	msg := err.Error()
	col, at := 0, -1
	for _, word := range words {
		if strings.Contains(msg, strconv.Quote(word)) {
			at = col
		}
		col += len(word) + 1
	}
	var ae *api.Error
	if at < 0 && errors.As(err, &ae) && ae.Code == "invalid_path" {
		at = col
	}
	if at < 0 {
		return
	}
	fmt.Fprintf(w, "  %s\n  %s^\n", strings.Join(words, " "), strings.Repeat(" ", at))
}

// edit runs set or delete on the candidate.
func (s *Shell) edit(ctx context.Context, verb string, path []string) error {
	var ch api.Changed
	var err error
	if verb == "set" {
		ch, err = s.api.Set(ctx, path)
	} else {
		ch, err = s.api.Delete(ctx, path)
	}
	if err != nil {
		return err
	}
	s.changed = ch.Changed
	return nil
}

// ConfigUsage is the help of configuration mode.
const ConfigUsage = `Configuration mode (the prompt shows * while the candidate has uncommitted changes):
  set PATH... [VALUE]        change the candidate, relative to the edit level
  delete PATH... [VALUE]     remove from the candidate, relative to the edit level
  show [PATH...]             the candidate from the edit level down; + added, - deleted, > changed
  edit PATH...               move the edit level down
  up                         one level up
  top                        back to the top level
  compare [N]                candidate against running, or against commit N
  commit [COMMENT]           validate and apply the candidate
  commit-confirm MINUTES [COMMENT]
  confirm                    keep a commit-confirm
  discard                    throw away the candidate's changes
  rollback N                 commit archive entry N again
  load FILE                  replace the candidate with the set lines in FILE (a **** secret keeps its value)
  save FILE                  write the candidate as set lines (secrets as ****)
  run COMMAND...             an operational command
  exit [discard]             leave configuration mode (refused with uncommitted changes unless discard)
Type ? anywhere for the words allowed there; TAB completes.
`

func (s *Shell) configCommand(ctx context.Context, words []string) error {
	args := words[1:]
	here := func(rest []string) []string { return append(slices.Clone(s.level), rest...) }
	switch words[0] {
	case "set", "delete":
		if len(args) == 0 && len(s.level) == 0 {
			return usagef("%s needs a path, e.g. %s system host-name", words[0], words[0])
		}
		return s.edit(ctx, words[0], here(args))
	case "show":
		t, err := s.api.MarkedTree(ctx, here(args))
		if err != nil {
			return err
		}
		if t.Tree == "" {
			fmt.Fprintln(s.out, "Nothing is configured here.")
		}
		fmt.Fprint(s.out, t.Tree)
		return nil
	case "edit":
		if len(args) == 0 {
			return usagef("edit needs a path, e.g. edit system interfaces eth0")
		}
		d, err := s.api.Describe(ctx, here(args))
		if err != nil {
			return err
		}
		if d.Kind != "container" && d.Kind != "tag" {
			return usagef("edit %s: %s is a value, not a level; set it instead", strings.Join(args, " "), args[len(args)-1])
		}
		s.level = here(args)
		return nil
	case "up":
		if len(s.level) > 0 {
			s.level = s.level[:len(s.level)-1]
		}
		return nil
	case "top":
		s.level = nil
		return nil
	case "exit", "quit":
		switch {
		case len(args) == 0 && len(s.level) > 0:
			s.level = nil
			return nil
		case len(args) == 1 && args[0] == "discard":
			if _, err := s.api.Discard(ctx); err != nil {
				return err
			}
			s.changed = false
		case len(args) > 0:
			return usagef("exit takes nothing, or discard")
		default:
			s.refreshChanged(ctx)
			if s.changed {
				return errors.New("the candidate has uncommitted changes: commit them, or leave with exit discard")
			}
		}
		s.configuring, s.level = false, nil
		return nil
	case "load":
		if len(args) != 1 {
			return usagef("load needs one file of set lines")
		}
		return s.load(ctx, args[0])
	case "save":
		if len(args) != 1 {
			return usagef("save needs one file name")
		}
		return s.save(ctx, args[0])
	case "run":
		if len(args) == 0 {
			return usagef("run needs an operational command, e.g. run show ipsec")
		}
		if args[0] == "configure" {
			return usagef("already in configuration mode")
		}
		return s.operational(ctx, args)
	case "commit", "commit-confirm", "confirm", "discard", "compare", "rollback":
		return s.operational(ctx, words)
	case "help":
		fmt.Fprint(s.out, ConfigUsage)
		return nil
	}
	return usagef("unknown command %q in configuration mode; run %s reaches an operational command", words[0], words[0])
}

// load replaces the candidate with the configuration the set lines of file describe. A secret written as ****
// (as save and show configuration commands write it) keeps the candidate's value.
func (s *Shell) load(ctx context.Context, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var c config.Config
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words, err := config.Split(line)
		if err == nil {
			switch words[0] {
			case "set":
				err = c.SetRedacted(words[1:])
			case "delete":
				err = c.Delete(words[1:])
			default:
				err = fmt.Errorf("%q is not a configuration command; use set or delete", words[0])
			}
		}
		if err != nil {
			return fmt.Errorf("%s line %d: %w; the candidate is unchanged", file, n+1, err)
		}
	}
	body, err := config.Marshal(&c)
	if err != nil {
		return err
	}
	ch, err := s.api.PutCandidate(ctx, body)
	if err != nil {
		return err
	}
	s.changed = ch.Changed
	fmt.Fprintf(s.out, "Loaded %s into the candidate; compare shows what changed, commit applies it.\n", file)
	return nil
}

// save writes the candidate as set lines, secrets as ****, readable by its owner only.
func (s *Shell) save(ctx context.Context, file string) error {
	out, err := s.api.ConfigCommands(ctx, "candidate", false)
	if err != nil {
		return err
	}
	text := strings.Join(out.Commands, "\n") + "\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "Saved %d lines to %s (secrets as ****; load keeps the candidate's).\n", len(out.Commands), file)
	return nil
}
