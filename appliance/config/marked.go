package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Marks of MarkedTree, as VyOS shows them in configuration mode.
const (
	MarkAdded   = '+' // the line is only in the candidate
	MarkDeleted = '-' // the line is only in the running configuration
	MarkChanged = '>' // the leaf is in both, with another value in the candidate
)

// MarkedTree renders the part of candidate at path in the curly-brace form of Tree, every line starting with a
// mark against running (MarkAdded, MarkDeleted, MarkChanged) or a space. Deleted lines show the running value.
// Secrets are shown as Placeholder but compared by value. path is node names and tag keys, as in set lines,
// leading to a container, a tag node or an entry of one; an empty path is the whole configuration.
func MarkedTree(running, candidate *Config, path []string) (string, error) {
	a, b := reflect.ValueOf(running).Elem(), reflect.ValueOf(candidate).Elem()
	only := ""
	for i := 0; i < len(path); i++ {
		f, ok := lookupField(a.Type(), path[i])
		if !ok {
			return "", pathErr(path[:i], "no node %q here; one of %s", path[i], strings.Join(childNames(a.Type()), ", "))
		}
		fa, fb := a.Field(f.index), b.Field(f.index)
		switch kindOf(f.typ) {
		case Container:
			a, b = fa, fb
		case Tag:
			if i+1 == len(path) {
				only = f.name // the tag node with all its entries
				break
			}
			i++
			et := f.typ.Elem().Elem()
			a, b = entry(fa, path[i], et), entry(fb, path[i], et)
		default:
			if i+1 != len(path) {
				return "", pathErr(path[:i+1], "no node below a value")
			}
			only = f.name
		}
		if only != "" {
			break
		}
	}
	var sb strings.Builder
	markedTree(&sb, a, b, 0, only)
	return sb.String(), nil
}

// entry is the map m's entry key, or the zero value of et when there is none.
func entry(m reflect.Value, key string, et reflect.Type) reflect.Value {
	if m.IsValid() && !m.IsNil() {
		if ev := m.MapIndex(reflect.ValueOf(key)); ev.IsValid() && !ev.IsNil() {
			return ev.Elem()
		}
	}
	return reflect.New(et).Elem()
}

// markedTree is tree over two values of one struct type: a from the running configuration, b from the candidate.
// only, if not empty, restricts it to one field.
func markedTree(sb *strings.Builder, a, b reflect.Value, depth int, only string) {
	indent := strings.Repeat("    ", depth)
	line := func(mark byte, format string, args ...any) {
		sb.WriteByte(mark)
		sb.WriteString(indent)
		fmt.Fprintf(sb, format, args...)
		sb.WriteByte('\n')
	}
	block := func(ea, eb reflect.Value, head string) {
		ia, ib := isEmpty(ea), isEmpty(eb)
		mark := byte(' ')
		switch {
		case ia && !ib:
			mark = MarkAdded
		case ib && !ia:
			mark = MarkDeleted
		}
		line(mark, "%s {", head)
		markedTree(sb, ea, eb, depth+1, "")
		line(mark, "}")
	}
	for _, f := range fieldsOf(a.Type()) {
		if only != "" && f.name != only {
			continue
		}
		fa, fb := a.Field(f.index), b.Field(f.index)
		show := func(v reflect.Value) string {
			if f.secret {
				return Placeholder
			}
			return quoteIfNeeded(formatValue(v))
		}
		switch kindOf(f.typ) {
		case Container:
			if !isEmpty(fa) || !isEmpty(fb) {
				block(fa, fb, f.name)
			}
		case Tag:
			keys := mapKeys(fa)
			for _, k := range mapKeys(fb) {
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
			sortKeys(keys)
			et := f.typ.Elem().Elem()
			for _, k := range keys {
				ea, eb := entry(fa, k, et), entry(fb, k, et)
				inA, inB := hasKey(fa, k), hasKey(fb, k)
				head := f.name + " " + quoteIfNeeded(k)
				switch {
				case inA && inB:
					block(ea, eb, head)
				case inB:
					line(MarkAdded, "%s {", head)
					markedTree(sb, reflect.New(et).Elem(), eb, depth+1, "")
					line(MarkAdded, "}")
				default:
					line(MarkDeleted, "%s {", head)
					markedTree(sb, ea, reflect.New(et).Elem(), depth+1, "")
					line(MarkDeleted, "}")
				}
			}
		case Multi:
			va, vb := values(fa), values(fb)
			for j, v := range vb {
				mark := byte(' ')
				if !slices.Contains(va, v) {
					mark = MarkAdded
				}
				line(mark, "%s %s", f.name, show(fb.Index(j)))
			}
			for j, v := range va {
				if !slices.Contains(vb, v) {
					line(MarkDeleted, "%s %s", f.name, show(fa.Index(j)))
				}
			}
		case Flag:
			switch {
			case fa.Bool() && fb.Bool():
				line(' ', "%s", f.name)
			case fb.Bool():
				line(MarkAdded, "%s", f.name)
			case fa.Bool():
				line(MarkDeleted, "%s", f.name)
			}
		default:
			za, zb := fa.IsZero(), fb.IsZero()
			switch {
			case !za && !zb && formatValue(fa) == formatValue(fb):
				line(' ', "%s %s", f.name, show(fb))
			case !za && !zb:
				line(MarkChanged, "%s %s", f.name, show(fb))
			case !zb:
				line(MarkAdded, "%s %s", f.name, show(fb))
			case !za:
				line(MarkDeleted, "%s %s", f.name, show(fa))
			}
		}
	}
}

func hasKey(m reflect.Value, key string) bool {
	return m.IsValid() && !m.IsNil() && m.MapIndex(reflect.ValueOf(key)).IsValid()
}

func values(s reflect.Value) []string {
	out := make([]string, s.Len())
	for i := range out {
		out[i] = formatValue(s.Index(i))
	}
	return out
}
