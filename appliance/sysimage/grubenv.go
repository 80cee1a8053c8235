package sysimage

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// envSize is the size of GRUB's environment block: GRUB reads and writes (save_env) exactly these bytes in place,
// so the file is never resized.
const envSize = 1024

const envHeader = "# GRUB Environment Block\n"

// Env is GRUB's environment block (grubenv): what the boot loader reads at each boot (load_env) and writes when
// it consumes a trial boot (save_env).
type Env map[string]string

// ParseEnv reads a grubenv block. Lines starting with '#' are comments (and the padding); a value's escaped
// characters (a backslash before a backslash or a newline) are taken as they are meant.
func ParseEnv(b []byte) (Env, error) {
	if len(b) != envSize || !bytes.HasPrefix(b, []byte(envHeader)) {
		return nil, fmt.Errorf("sysimage: not a GRUB environment block (%d bytes; want %d starting %q)", len(b), envSize, strings.TrimSpace(envHeader))
	}
	env := Env{}
	s := string(b[len(envHeader):])
	for len(s) > 0 {
		line, rest := cutLine(s)
		s = rest
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("sysimage: grubenv: line %q is not NAME=VALUE", line)
		}
		env[k] = strings.NewReplacer(`\\`, `\`, "\\\n", "\n").Replace(v)
	}
	return env, nil
}

// cutLine splits s after its first newline that no backslash escapes.
func cutLine(s string) (line, rest string) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '\n':
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// Encode writes the block as grub-editenv does: the header, NAME=VALUE lines in name order, '#' to the end.
func (e Env) Encode() ([]byte, error) {
	var b strings.Builder
	b.WriteString(envHeader)
	for _, k := range slices.Sorted(maps.Keys(e)) {
		if k == "" || strings.ContainsAny(k, "=\n\\#") || strings.ContainsAny(e[k], "\n\\") {
			return nil, fmt.Errorf("sysimage: grubenv: %q=%q: names and values are plain text on one line", k, e[k])
		}
		fmt.Fprintf(&b, "%s=%s\n", k, e[k])
	}
	if b.Len() > envSize {
		return nil, fmt.Errorf("sysimage: grubenv: %d bytes, more than GRUB's %d", b.Len(), envSize)
	}
	return append([]byte(b.String()), bytes.Repeat([]byte{'#'}, envSize-b.Len())...), nil
}
