package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/chzyer/readline"
	"golang.org/x/term"
)

// Interact runs the shell on stdin: with line editing, history, ? and TAB when stdin is a terminal, else as a
// script (no prompt, the status of the first failure).
func Interact(ctx context.Context, sh *Shell, stdin io.Reader, stdout io.Writer) int {
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return sh.Run(ctx, NewScriptReader(stdin, nil), false)
	}
	tr, err := NewTerminalReader(ctx, sh, f, stdout, HistoryFile())
	if err != nil {
		// A terminal that cannot be put into raw mode still gets prompts, without editing.
		fmt.Fprintf(sh.errOut, "toride: no line editing: %v\n", err)
		return sh.Run(ctx, NewScriptReader(stdin, stdout), true)
	}
	defer tr.Close()
	return sh.Run(ctx, tr, true)
}

// HistoryFile is where the current user's command history is kept: $HOME/.toride_history, or "" (no history)
// when there is no home directory.
func HistoryFile() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".toride_history")
}

// TerminalReader reads lines from a terminal with editing (Emacs keys), history, TAB completion and ? help from
// the shell. It asks nothing of the terminal but the VT100 basics, so it works over a plain serial line.
type TerminalReader struct {
	rl  *readline.Instance
	sh  *Shell
	ctx context.Context
}

// NewTerminalReader starts line editing on the terminal in, keeping the history in historyFile (created 0600;
// "" keeps none).
func NewTerminalReader(ctx context.Context, sh *Shell, in *os.File, out io.Writer, historyFile string) (*TerminalReader, error) {
	tr := &TerminalReader{sh: sh, ctx: ctx}
	if historyFile != "" {
		// The history holds what was typed, secrets included: the user's alone to read.
		f, err := os.OpenFile(historyFile, os.O_CREATE|os.O_RDWR, 0o600)
		if err == nil {
			f.Close()
			err = os.Chmod(historyFile, 0o600)
		}
		if err != nil {
			historyFile = ""
		}
	}
	cfg := &readline.Config{
		Prompt:            sh.Prompt(),
		HistoryFile:       historyFile,
		HistoryLimit:      1000,
		AutoComplete:      completer{tr},
		Stdin:             in,
		Stdout:            out,
		Stderr:            out,
		FuncIsTerminal:    func() bool { return true },
		HistorySearchFold: true,
		// A serial line reports no width: assume the 80 columns every console has.
		FuncGetWidth: func() int {
			if w, _, err := term.GetSize(int(in.Fd())); err == nil && w > 0 {
				return w
			}
			return 80
		},
	}
	cfg.SetListener(tr.onKey)
	rl, err := readline.NewEx(cfg)
	if err != nil {
		return nil, err
	}
	tr.rl = rl
	return tr, nil
}

// ReadLine reads one edited line.
func (tr *TerminalReader) ReadLine(prompt string) (string, error) {
	tr.rl.SetPrompt(prompt)
	line, err := tr.rl.Readline()
	switch {
	case errors.Is(err, readline.ErrInterrupt):
		return "", errInterrupted
	case err != nil:
		return "", io.EOF
	}
	return line, nil
}

// Close gives the terminal back.
func (tr *TerminalReader) Close() error { return tr.rl.Close() }

// onKey shows the help for the line when ? is typed (outside quotes), and takes the ? out of the line.
func (tr *TerminalReader) onKey(line []rune, pos int, key rune) ([]rune, int, bool) {
	if key != '?' || pos == 0 || line[pos-1] != '?' {
		return nil, 0, false
	}
	before := string(line[:pos-1])
	if strings.Count(before, "'")%2 == 1 || strings.Count(before, `"`)%2 == 1 {
		return nil, 0, false // a ? inside a quoted value is part of it
	}
	rest := append([]rune(before), line[pos:]...)
	var b bytes.Buffer
	b.WriteString(tr.sh.Prompt() + before + "\n")
	tr.sh.writeHelp(tr.ctx, &b, before)
	tr.rl.Write(bytes.ReplaceAll(b.Bytes(), []byte("\n"), []byte("\r\n")))
	return rest, pos - 1, true
}

// writeHelp writes what ? shows after line: the allowed words, or the error that says which word is wrong.
func (s *Shell) writeHelp(ctx context.Context, w io.Writer, line string) {
	_, items, err := s.Complete(ctx, line)
	if err != nil {
		pointAt(w, strings.Fields(line), err)
		fmt.Fprintf(w, "error: %v\n", err)
		return
	}
	WriteHelp(w, items)
}

// completer is readline's TAB completion over Shell.Complete.
type completer struct{ tr *TerminalReader }

func (c completer) Do(line []rune, pos int) ([][]rune, int) {
	partial, items, err := c.tr.sh.Complete(c.tr.ctx, string(line[:pos]))
	if err != nil {
		return nil, 0
	}
	var out [][]rune
	for _, it := range items {
		if it.Literal() {
			out = append(out, []rune(strings.TrimPrefix(it.Word, partial)+" "))
		}
	}
	return out, len([]rune(partial))
}
