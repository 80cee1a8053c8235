package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Commands renders c as `set …` lines in schema order, one per leaf value, each value quoted. Parsing them into
// an empty Config with ParseCommands gives c back.
func (c *Config) Commands() []string {
	var lines []string
	walk(reflect.ValueOf(c).Elem(), nil, func(path []string, value string, hasValue bool) {
		line := "set " + joinWords(path)
		if hasValue {
			line += " " + Quote(value)
		}
		lines = append(lines, line)
	})
	return lines
}

// walk calls emit for every leaf value under v, and for every tag-node entry that holds nothing.
func walk(v reflect.Value, path []string, emit func(path []string, value string, hasValue bool)) {
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		p := append(slices.Clip(path), f.name)
		switch kindOf(f.typ) {
		case Container:
			walk(fv, p, emit)
		case Tag:
			for _, k := range mapKeys(fv) {
				ev := fv.MapIndex(reflect.ValueOf(k)).Elem()
				kp := append(slices.Clip(p), k)
				if isEmpty(ev) {
					emit(kp, "", false)
					continue
				}
				walk(ev, kp, emit)
			}
		case Multi:
			for j := range fv.Len() {
				emit(p, formatValue(fv.Index(j)), true)
			}
		case Flag:
			if fv.Bool() {
				emit(p, "", false)
			}
		default:
			if !fv.IsZero() {
				emit(p, formatValue(fv), true)
			}
		}
	}
}

// isEmpty reports whether a container holds nothing that would be rendered.
func isEmpty(v reflect.Value) bool {
	empty := true
	walk(v, nil, func([]string, string, bool) { empty = false })
	return empty
}

// Tree renders c in the VyOS curly-brace form that `show configuration` prints.
func (c *Config) Tree() string {
	var b strings.Builder
	tree(&b, reflect.ValueOf(c).Elem(), 0)
	return b.String()
}

func tree(b *strings.Builder, v reflect.Value, depth int) {
	indent := strings.Repeat("    ", depth)
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		switch kindOf(f.typ) {
		case Container:
			if !isEmpty(fv) {
				fmt.Fprintf(b, "%s%s {\n", indent, f.name)
				tree(b, fv, depth+1)
				fmt.Fprintf(b, "%s}\n", indent)
			}
		case Tag:
			for _, k := range mapKeys(fv) {
				ev := fv.MapIndex(reflect.ValueOf(k)).Elem()
				if isEmpty(ev) {
					fmt.Fprintf(b, "%s%s %s {\n%s}\n", indent, f.name, quoteIfNeeded(k), indent)
					continue
				}
				fmt.Fprintf(b, "%s%s %s {\n", indent, f.name, quoteIfNeeded(k))
				tree(b, ev, depth+1)
				fmt.Fprintf(b, "%s}\n", indent)
			}
		case Multi:
			for j := range fv.Len() {
				fmt.Fprintf(b, "%s%s %s\n", indent, f.name, quoteIfNeeded(formatValue(fv.Index(j))))
			}
		case Flag:
			if fv.Bool() {
				fmt.Fprintf(b, "%s%s\n", indent, f.name)
			}
		default:
			if !fv.IsZero() {
				fmt.Fprintf(b, "%s%s %s\n", indent, f.name, quoteIfNeeded(formatValue(fv)))
			}
		}
	}
}

// ParseCommands applies `set` and `delete` lines to c in order. Empty lines and lines starting with '#' are
// skipped. It stops at the first bad line and returns an error naming its number; c then holds the lines before it.
func (c *Config) ParseCommands(text string) error {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 4<<20) // certificates make long lines
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := c.Apply(line); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	return sc.Err()
}

// Apply runs one `set …` or `delete …` line against c.
func (c *Config) Apply(line string) error {
	words, err := Split(line)
	if err != nil {
		return err
	}
	if len(words) == 0 {
		return errors.New("empty command")
	}
	switch words[0] {
	case "set":
		return c.Set(words[1:])
	case "delete":
		return c.Delete(words[1:])
	default:
		return fmt.Errorf("%q is not a configuration command; use set or delete", words[0])
	}
}

// Split cuts a command line into words. Single quotes keep everything literally; double quotes allow the escapes
// \n, \t, \" and \\; a backslash outside quotes escapes the next character.
func Split(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\'':
			inWord = true
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
		case ch == '"':
			inWord = true
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
					switch line[i] {
					case 'n':
						cur.WriteByte('\n')
					case 't':
						cur.WriteByte('\t')
					default:
						cur.WriteByte(line[i])
					}
					continue
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New("unterminated double quote")
			}
		case ch == '\\' && i+1 < len(line):
			inWord = true
			i++
			cur.WriteByte(line[i])
		default:
			inWord = true
			cur.WriteByte(ch)
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// Quote renders a value for a set line: in single quotes, or in double quotes with escapes when it holds a single
// quote or a line break.
func Quote(s string) string {
	if !strings.ContainsAny(s, "'\n\t\\") {
		return "'" + s + "'"
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func quoteIfNeeded(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\"\n\t\\{}#;") {
		return s
	}
	return Quote(s)
}

func joinWords(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = quoteIfNeeded(w)
	}
	return strings.Join(q, " ")
}

// Marshal renders c as indented JSON. Keys come out in schema order and map keys sorted, so equal configs give
// equal bytes.
func Marshal(c *Config) ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Unmarshal parses JSON into a new Config. Unknown keys are errors, named with their position, so a typo in a
// hand-edited file is never silently dropped.
func Unmarshal(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	c := &Config{}
	if err := dec.Decode(c); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, se.Offset)
			return nil, fmt.Errorf("config JSON line %d column %d: %w", line, col, err)
		}
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, fmt.Errorf("config JSON field %q: %s cannot hold a JSON %s", ute.Field, ute.Type, ute.Value)
		}
		return nil, fmt.Errorf("config JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("config JSON: trailing data after the configuration object")
	}
	return c, nil
}

func position(data []byte, off int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	b, err := json.Marshal(c)
	if err != nil {
		panic("config: clone: " + err.Error()) // every schema type marshals; a failure is a schema bug
	}
	out, err := Unmarshal(b)
	if err != nil {
		panic("config: clone: " + err.Error())
	}
	return out
}

// Equal reports whether two configs hold the same settings.
func Equal(a, b *Config) bool {
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return bytes.Equal(ab, bb)
}

func sortKeys(keys []string) { slices.Sort(keys) }
