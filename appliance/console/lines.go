package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// errInterrupted is a line abandoned with Ctrl-C.
var errInterrupted = errors.New("interrupted")

// ScriptReader reads lines from a pipe or a file: no editing, and a prompt only when asked (a terminal that
// cannot be put into raw mode).
type ScriptReader struct {
	sc     *bufio.Scanner
	prompt io.Writer // nil: no prompt
}

// NewScriptReader reads lines from in; prompts go to prompt unless it is nil.
func NewScriptReader(in io.Reader, prompt io.Writer) *ScriptReader {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20) // certificates make long lines
	return &ScriptReader{sc: sc, prompt: prompt}
}

// ReadLine returns the next line, or io.EOF.
func (r *ScriptReader) ReadLine(prompt string) (string, error) {
	if r.prompt != nil {
		fmt.Fprint(r.prompt, prompt)
	}
	if !r.sc.Scan() {
		if err := r.sc.Err(); err != nil {
			return "", err
		}
		return "", io.EOF
	}
	return r.sc.Text(), nil
}
