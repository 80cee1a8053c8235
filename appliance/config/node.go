package config

import (
	"encoding"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is what a schema node is, in VyOS terms.
type Kind int

const (
	// Container is a node with named children (a Go struct).
	Container Kind = iota
	// Tag is a node whose children are named entries created by the admin (a Go map): `interfaces eth0`.
	Tag
	// Leaf is a node with one value.
	Leaf
	// Multi is a leaf with a list of values, each set on its own line.
	Multi
	// Flag is a leaf that is present or absent (a Go bool): `set … disable`.
	Flag
)

// Node describes one node of the schema, for help and completion.
type Node struct {
	Name     string   // the node's name in set lines
	Kind     Kind     // what it is
	Help     string   // one line of help
	Default  string   // the default of a leaf, if any
	Enum     []string // the accepted values of a string leaf, if restricted
	KeyKind  string   // for a tag node: what its keys are
	Secret   bool     // the value is a secret (a key, a hash)
	Children []string // for a container: its children's names
	Values   []string // for a tag node: the existing keys; for a leaf: the current values
	Range    [2]int64 // for an integer leaf with a range
	Format   string   // how a leaf's value or a tag node's key is written: <x.x.x.x/n>, <1-65535>, <name>
	typ      reflect.Type
}

// field is a struct field as the schema sees it.
type field struct {
	name    string
	index   int
	help    string
	def     string
	enum    []string
	key     string
	lo, hi  int64
	ranged  bool
	secret  bool
	typ     reflect.Type
	scalarT reflect.Type // for Multi: the element type
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" || !sf.IsExported() {
			continue
		}
		f := field{name: name, index: i, help: sf.Tag.Get("help"), def: sf.Tag.Get("default"),
			key: sf.Tag.Get("key"), secret: isSecretType(sf.Type), typ: sf.Type}
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, "|")
		}
		if r := sf.Tag.Get("range"); r != "" {
			lo, hi, _ := strings.Cut(r, "-")
			f.lo, _ = strconv.ParseInt(lo, 10, 64)
			f.hi, _ = strconv.ParseInt(hi, 10, 64)
			f.ranged = true
		}
		if sf.Type.Kind() == reflect.Slice {
			f.scalarT = sf.Type.Elem()
		}
		out = append(out, f)
	}
	return out
}

func kindOf(t reflect.Type) Kind {
	switch {
	case t.Kind() == reflect.Map:
		return Tag
	case t.Kind() == reflect.Bool:
		return Flag
	case t.Kind() == reflect.Slice:
		return Multi
	case t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshaler):
		return Container
	default:
		return Leaf
	}
}

func lookupField(t reflect.Type, name string) (field, bool) {
	for _, f := range fieldsOf(t) {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

func childNames(t reflect.Type) []string {
	var names []string
	for _, f := range fieldsOf(t) {
		names = append(names, f.name)
	}
	return names
}

// PathError is a set, delete or describe request that does not fit the schema.
type PathError struct {
	Path []string // the path as far as it made sense
	Msg  string
}

func (e *PathError) Error() string {
	if len(e.Path) == 0 {
		return e.Msg
	}
	return strings.Join(e.Path, " ") + ": " + e.Msg
}

func pathErr(path []string, format string, args ...any) error {
	return &PathError{Path: append([]string(nil), path...), Msg: fmt.Sprintf(format, args...)}
}

// Set applies one `set` command (without the word set) to c: path is the node names and keys, and the value last
// for a leaf. Setting a multi-value leaf adds the value if it is not there yet; setting a tag node's key alone
// creates an empty entry.
func (c *Config) Set(path []string) error { return c.set(path, false) }

// SetRedacted is Set for a line of a redacted listing (`show configuration commands` with secrets hidden): a
// secret given as Placeholder is stored as Placeholder, for KeepSecrets to resolve against the configuration it
// replaces.
func (c *Config) SetRedacted(path []string) error { return c.set(path, true) }

func (c *Config) set(path []string, redacted bool) error {
	if len(path) == 0 {
		return pathErr(nil, "set needs a path, e.g. set system host-name NAME")
	}
	v := reflect.ValueOf(c).Elem()
	for i := 0; ; {
		t := v.Type()
		if i == len(path) {
			return pathErr(path, "incomplete: one of %s must follow", strings.Join(childNames(t), ", "))
		}
		f, ok := lookupField(t, path[i])
		if !ok {
			return pathErr(path[:i], "no node %q here; one of %s", path[i], strings.Join(childNames(t), ", "))
		}
		i++
		fv := v.Field(f.index)
		switch kindOf(f.typ) {
		case Container:
			v = fv
			continue
		case Tag:
			if i == len(path) {
				return pathErr(path[:i], "needs a %s, e.g. set %s NAME", keyWord(f.key), strings.Join(path[:i], " "))
			}
			key := path[i]
			if err := checkKey(f.key, key); err != nil {
				return pathErr(path[:i], "%v", err)
			}
			i++
			if fv.IsNil() {
				fv.Set(reflect.MakeMap(f.typ))
			}
			ev := fv.MapIndex(reflect.ValueOf(key))
			if !ev.IsValid() {
				ev = reflect.New(f.typ.Elem().Elem())
				fv.SetMapIndex(reflect.ValueOf(key), ev)
			}
			if i == len(path) {
				return nil // the entry alone
			}
			v = ev.Elem()
			continue
		case Flag:
			switch rest := path[i:]; {
			case len(rest) == 0 || rest[0] == "true":
				fv.SetBool(true)
			case rest[0] == "false":
				fv.SetBool(false)
			default:
				return pathErr(path[:i], "takes no value (or true/false), got %q", rest[0])
			}
			if len(path)-i > 1 {
				return pathErr(path[:i], "too many words after the value: %q", strings.Join(path[i+1:], " "))
			}
			return nil
		case Leaf, Multi:
			if i == len(path) {
				return pathErr(path[:i], "needs a value%s", valueHint(f))
			}
			if len(path)-i > 1 {
				return pathErr(path[:i], "takes one value; quote a value with spaces (got %q)", strings.Join(path[i:], " "))
			}
			if f.scalarT != nil {
				nv, err := parseValue(f, f.scalarT, path[i])
				if err != nil {
					return pathErr(path[:i], "%v", err)
				}
				for j := range fv.Len() {
					if reflect.DeepEqual(fv.Index(j).Interface(), nv.Interface()) {
						return nil
					}
				}
				fv.Set(reflect.Append(fv, nv))
				return nil
			}
			if f.secret && path[i] == Placeholder && redacted {
				fv.SetString(Placeholder)
				return nil
			}
			if f.secret && path[i] == Placeholder {
				return pathErr(path[:i], "%q is how a hidden secret is shown, not a value; give the %s itself, or leave this line out to keep the one set",
					Placeholder, f.name)
			}
			nv, err := parseValue(f, f.typ, path[i])
			if err != nil {
				return pathErr(path[:i], "%v", err)
			}
			fv.Set(nv)
			return nil
		}
	}
}

// Delete applies one `delete` command: it removes the node at path and everything below it. For a multi-value leaf
// a trailing value removes that value alone; for a leaf a trailing value must match the current one.
func (c *Config) Delete(path []string) error {
	if len(path) == 0 {
		return pathErr(nil, "delete needs a path; to empty the whole configuration, delete each top-level section")
	}
	v := reflect.ValueOf(c).Elem()
	for i := 0; ; {
		t := v.Type()
		f, ok := lookupField(t, path[i])
		if !ok {
			return pathErr(path[:i], "no node %q here; one of %s", path[i], strings.Join(childNames(t), ", "))
		}
		i++
		fv := v.Field(f.index)
		rest := path[i:]
		switch kindOf(f.typ) {
		case Container:
			if len(rest) == 0 {
				if fv.IsZero() {
					return pathErr(path, "nothing to delete: not set")
				}
				fv.Set(reflect.Zero(f.typ))
				return nil
			}
			v = fv
			continue
		case Tag:
			if len(rest) == 0 {
				if fv.Len() == 0 {
					return pathErr(path, "nothing to delete: not set")
				}
				fv.Set(reflect.Zero(f.typ))
				return nil
			}
			ev := fv.MapIndex(reflect.ValueOf(rest[0]))
			if !ev.IsValid() {
				return pathErr(path[:i+1], "nothing to delete: no such entry (existing: %s)", strings.Join(mapKeys(fv), ", "))
			}
			if len(rest) == 1 {
				fv.SetMapIndex(reflect.ValueOf(rest[0]), reflect.Value{})
				if fv.Len() == 0 {
					fv.Set(reflect.Zero(f.typ))
				}
				return nil
			}
			i++
			v = ev.Elem()
			continue
		default:
			if len(rest) > 1 {
				return pathErr(path[:i], "too many words: %q", strings.Join(rest, " "))
			}
			if fv.IsZero() {
				return pathErr(path[:i], "nothing to delete: not set")
			}
			if len(rest) == 0 {
				fv.Set(reflect.Zero(f.typ))
				return nil
			}
			if f.scalarT != nil {
				for j := range fv.Len() {
					if formatValue(fv.Index(j)) == rest[0] {
						nv := reflect.AppendSlice(reflect.MakeSlice(f.typ, 0, fv.Len()-1), fv.Slice(0, j))
						nv = reflect.AppendSlice(nv, fv.Slice(j+1, fv.Len()))
						if nv.Len() == 0 {
							nv = reflect.Zero(f.typ)
						}
						fv.Set(nv)
						return nil
					}
				}
				return pathErr(path[:i], "nothing to delete: %q is not one of the values", rest[0])
			}
			if cur := formatValue(fv); cur != rest[0] {
				return pathErr(path[:i], "nothing to delete: the value is %q, not %q", cur, rest[0])
			}
			fv.Set(reflect.Zero(f.typ))
			return nil
		}
	}
}

// Describe returns the schema node at path, with the current values from c, for help and completion. A path
// ending inside a tag node's keys describes the tag node.
func (c *Config) Describe(path []string) (Node, error) {
	v := reflect.ValueOf(c).Elem()
	node := Node{Kind: Container, Children: childNames(v.Type()), typ: v.Type()}
	for i := 0; i < len(path); {
		if node.Kind != Container {
			return node, pathErr(path[:i], "no node below a value")
		}
		f, ok := lookupField(v.Type(), path[i])
		if !ok {
			return node, pathErr(path[:i], "no node %q here; one of %s", path[i], strings.Join(childNames(v.Type()), ", "))
		}
		i++
		fv := v.Field(f.index)
		node = Node{Name: f.name, Kind: kindOf(f.typ), Help: f.help, Default: defaultOf(v.Type(), f), Enum: f.enum, KeyKind: f.key,
			Secret: f.secret, typ: f.typ}
		if f.ranged {
			node.Range = [2]int64{f.lo, f.hi}
		}
		node.Format = formatOf(f)
		switch node.Kind {
		case Container:
			node.Children = childNames(f.typ)
			v = fv
		case Tag:
			node.Values = mapKeys(fv)
			if i == len(path) {
				return node, nil
			}
			ev := fv.MapIndex(reflect.ValueOf(path[i]))
			i++
			et := f.typ.Elem().Elem()
			if ev.IsValid() {
				v = ev.Elem()
			} else {
				v = reflect.New(et).Elem()
			}
			node = Node{Name: path[i-1], Kind: Container, Children: childNames(et), typ: et}
		case Multi:
			for j := range fv.Len() {
				node.Values = append(node.Values, formatValue(fv.Index(j)))
			}
			return node, nil
		default:
			if !fv.IsZero() {
				node.Values = []string{formatValue(fv)}
			}
			return node, nil
		}
	}
	return node, nil
}

func mapKeys(m reflect.Value) []string {
	keys := make([]string, 0, m.Len())
	for _, k := range m.MapKeys() {
		keys = append(keys, k.String())
	}
	sortKeys(keys)
	return keys
}

// formatOf is how a field's value (or a tag node's key) is written, for help: the VyOS-style <…> form.
func formatOf(f field) string {
	switch kindOf(f.typ) {
	case Container, Flag:
		return ""
	case Tag:
		switch f.key {
		case "ifname":
			return "<interface>"
		case "network":
			return "<x.x.x.x/n>"
		case "uuid":
			return "<uuid>"
		}
		return "<name>"
	}
	t := f.typ
	if f.scalarT != nil {
		t = f.scalarT
	}
	switch {
	case f.secret:
		return "<secret>"
	case len(f.enum) > 0:
		return "<" + strings.Join(f.enum, "|") + ">"
	case f.ranged:
		return fmt.Sprintf("<%d-%d>", f.lo, f.hi)
	case t == reflect.TypeFor[netip.Prefix]():
		return "<x.x.x.x/n>"
	case t == reflect.TypeFor[netip.Addr]():
		return "<x.x.x.x>"
	case t.Kind() == reflect.Int64 && reflect.PointerTo(t).Implements(textUnmarshaler):
		return "<seconds>"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "<number>"
	}
	return "<text>"
}

func keyWord(kind string) string {
	switch kind {
	case "ifname":
		return "interface name"
	case "network":
		return "destination network"
	default:
		return "name"
	}
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

func checkKey(kind, key string) error {
	switch kind {
	case "ifname":
		if len(key) == 0 || len(key) > 15 || strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r > '~' || r == '/' || r == ':' }) || key == "." || key == ".." {
			return fmt.Errorf("%q is not an interface name: 1-15 printable ASCII characters, none of '/', ':' or spaces", key)
		}
	case "network":
		p, err := netip.ParsePrefix(key)
		if err != nil {
			return fmt.Errorf("%q is not a network; write it as ADDRESS/LENGTH, e.g. 0.0.0.0/0", key)
		}
		if p.Masked() != p {
			return fmt.Errorf("%q has host bits set; use %s", key, p.Masked())
		}
	default:
		if !namePattern.MatchString(key) {
			return fmt.Errorf("%q is not a valid name: 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", key)
		}
	}
	return nil
}

func valueHint(f field) string {
	switch {
	case len(f.enum) > 0:
		return ": one of " + strings.Join(f.enum, ", ")
	case f.ranged:
		return fmt.Sprintf(": a number from %d to %d", f.lo, f.hi)
	case f.help != "":
		return " (" + f.help + ")"
	}
	return ""
}

// parseValue turns one word into a value of type t, checking the field's enum and range.
func parseValue(f field, t reflect.Type, s string) (reflect.Value, error) {
	if len(f.enum) > 0 {
		ok := false
		for _, e := range f.enum {
			ok = ok || e == s
		}
		if !ok {
			return reflect.Value{}, fmt.Errorf("%q is not allowed; one of %s", s, strings.Join(f.enum, ", "))
		}
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		nv := reflect.New(t)
		if err := nv.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return reflect.Value{}, fmt.Errorf("%q is not %s", s, typeWord(t))
		}
		if n, ok := textNumber(nv.Elem()); f.ranged && ok && (n < f.lo || n > f.hi) {
			return reflect.Value{}, fmt.Errorf("%q is not a number%s", s, rangeWord(f))
		}
		return nv.Elem(), nil
	}
	nv := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.String:
		if !utf8.ValidString(s) {
			return reflect.Value{}, fmt.Errorf("the value is not valid UTF-8")
		}
		if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 && r != '\n' && r != '\t' || r == 0x7f }) {
			return reflect.Value{}, fmt.Errorf("control characters are not allowed in a value")
		}
		nv.SetString(s)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || f.ranged && (n < f.lo || n > f.hi) {
			return reflect.Value{}, fmt.Errorf("%q is not a number%s", s, rangeWord(f))
		}
		nv.SetInt(n)
	case reflect.Uint32, reflect.Uint16, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil || f.ranged && (int64(n) < f.lo || int64(n) > f.hi) {
			return reflect.Value{}, fmt.Errorf("%q is not a number%s", s, rangeWord(f))
		}
		nv.SetUint(n)
	default:
		return reflect.Value{}, fmt.Errorf("unsupported type %s", t)
	}
	return nv, nil
}

func rangeWord(f field) string {
	if f.ranged {
		return fmt.Sprintf(" from %d to %d", f.lo, f.hi)
	}
	return ""
}

// textNumber is the number a leaf written as text stands for (a duration's seconds); ok is false when its text is
// no number.
func textNumber(v reflect.Value) (int64, bool) {
	tm, ok := v.Interface().(encoding.TextMarshaler)
	if !ok {
		return 0, false
	}
	b, err := tm.MarshalText()
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

func typeWord(t reflect.Type) string {
	if t.Kind() == reflect.Int64 && reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a number of seconds"
	}
	switch t {
	case reflect.TypeFor[netip.Addr]():
		return "an IP address (e.g. 192.0.2.1)"
	case reflect.TypeFor[netip.Prefix]():
		return "an address with prefix length (e.g. 192.0.2.0/24)"
	}
	return "a valid " + t.String()
}

// formatValue is the inverse of parseValue.
func formatValue(v reflect.Value) string {
	if tm, ok := v.Interface().(encoding.TextMarshaler); ok {
		b, _ := tm.MarshalText()
		return string(b)
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint32, reflect.Uint16, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	}
	return fmt.Sprint(v.Interface())
}
