package config

import (
	"reflect"
	"strings"
)

// WithDefaults returns a copy of c with every unset leaf that has a default filled in: the effective configuration
// that validation and the components see. c itself is not changed.
func (c *Config) WithDefaults() *Config {
	e := c.Clone()
	fillDefaults(reflect.ValueOf(e).Elem())
	return e
}

// defaulted is a component's configuration type: it fills its own defaults (and those of everything below it),
// and has no default tags.
type defaulted interface{ FillDefaults() }

var defaultedType = reflect.TypeFor[defaulted]()

func fillDefaults(v reflect.Value) {
	if v.Addr().Type().Implements(defaultedType) {
		v.Addr().Interface().(defaulted).FillDefaults()
		return
	}
	for _, f := range fieldsOf(v.Type()) {
		fv := v.Field(f.index)
		switch kindOf(f.typ) {
		case Container:
			fillDefaults(fv)
		case Tag:
			for _, k := range fv.MapKeys() {
				fillDefaults(fv.MapIndex(k).Elem())
			}
		case Leaf:
			if f.def != "" && fv.IsZero() {
				nv, err := parseValue(f, f.typ, f.def)
				if err != nil {
					panic("config: bad default for " + f.name + ": " + err.Error()) // a schema bug, caught by tests
				}
				fv.Set(nv)
			}
		case Multi:
			if f.def != "" && fv.Len() == 0 {
				for _, w := range strings.Fields(f.def) {
					nv, err := parseValue(f, f.scalarT, w)
					if err != nil {
						panic("config: bad default for " + f.name + ": " + err.Error())
					}
					fv.Set(reflect.Append(fv, nv))
				}
			}
		}
	}
}

// defaultOf is the default of field f of struct type t, as Describe shows it: its tag, or what t's FillDefaults
// puts into a zero t ("" when nothing).
func defaultOf(t reflect.Type, f field) string {
	if f.def == "-" {
		return ""
	}
	if f.def != "" || !reflect.PointerTo(t).Implements(defaultedType) {
		return f.def
	}
	z := reflect.New(t)
	z.Interface().(defaulted).FillDefaults()
	fv := z.Elem().Field(f.index)
	switch {
	case fv.IsZero():
		return ""
	case kindOf(f.typ) == Multi:
		words := make([]string, fv.Len())
		for j := range fv.Len() {
			words[j] = formatValue(fv.Index(j))
		}
		return strings.Join(words, " ")
	case kindOf(f.typ) == Leaf:
		return formatValue(fv)
	}
	return ""
}
