package config

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Redacted is the placeholder Redact writes over a secret.
const Redacted = "<redacted>"

// Redact returns a deep copy of c with every secret replaced by Redacted:
// each field that takes a *_file form (passwords, tokens, keys, the PFX
// password, the EAB HMAC key) and that is set. The result is for display
// (edge config); it is not a valid configuration to run.
func (c *Config) Redact() *Config {
	v := reflect.New(reflect.TypeOf(*c)).Elem()
	v.Set(deepCopy(reflect.ValueOf(*c)))
	redact(v)
	out := v.Addr().Interface().(*Config)
	out.vals, out.poolOrder = nil, nil
	return out
}

// deepCopy copies the exported structure of v: structs, pointers, slices
// and maps are new, so redacting the copy leaves the original alone.
func deepCopy(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(deepCopy(v.Elem()))
		return p
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		for i := range v.NumField() {
			if out.Field(i).CanSet() {
				out.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(deepCopy(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), deepCopy(it.Value()))
		}
		return out
	}
	return v
}

// redact overwrites the set secrets under v, which must be settable.
func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			redact(v.Elem())
		}
	case reflect.Struct:
		f := fieldsOf(v.Type())
		for _, s := range f.secrets {
			if fv := v.Field(s.val); fv.String() != "" {
				fv.SetString(Redacted)
			}
		}
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				redact(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			redact(v.Index(i))
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			e := reflect.New(it.Value().Type()).Elem()
			e.Set(it.Value())
			redact(e)
			v.SetMapIndex(it.Key(), e)
		}
	}
}

// Effective renders c as YAML, in the schema's key order, after defaults:
// durations as "5s", unset optional values left out. With Redact first it
// is what edge config prints.
func (c *Config) Effective() ([]byte, error) {
	n := toNode(reflect.ValueOf(*c))
	if n == nil {
		n = &yaml.Node{Kind: yaml.MappingNode}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// toNode makes the YAML node of v, or nil for a value left out (a zero
// scalar, an empty list or mapping, a nil pointer).
func toNode(v reflect.Value) *yaml.Node {
	scalar := func(s, tag string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Tag: tag} }
	if v.Type() == durationType {
		if v.Int() == 0 {
			return nil
		}
		return scalar(time.Duration(v.Int()).String(), "!!str")
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		if n := toNode(v.Elem()); n != nil {
			return n
		}
		// A set pointer to a zero value (passive.fails: 0, health: {})
		// says something: keep it.
		if v.Elem().Kind() == reflect.Struct {
			return &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
		}
		return scalar(fmt.Sprint(v.Elem().Interface()), "")
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		t := v.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !t.Field(i).IsExported() {
				continue
			}
			if c := toNode(v.Field(i)); c != nil {
				m.Content = append(m.Content, scalar(name, "!!str"), c)
			}
		}
		for i := range t.NumField() {
			// A list form (tag list:"KEY") set replaces KEY's scalar.
			if key := t.Field(i).Tag.Get("list"); key != "" && v.Field(i).Len() > 0 {
				for j := 0; j+1 < len(m.Content); j += 2 {
					if m.Content[j].Value == key {
						m.Content[j+1] = toNode(v.Field(i))
					}
				}
			}
		}
		if len(m.Content) == 0 {
			return nil
		}
		return m
	case reflect.Slice:
		if v.Len() == 0 {
			return nil
		}
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			c := toNode(v.Index(i))
			if c == nil {
				c = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
				if v.Index(i).Kind() != reflect.Struct {
					c = scalar(fmt.Sprint(v.Index(i).Interface()), "")
				}
			}
			s.Content = append(s.Content, c)
		}
		return s
	case reflect.Map:
		if v.Len() == 0 {
			return nil
		}
		m := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			c := toNode(v.MapIndex(k))
			if c == nil {
				c = &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle}
			}
			m.Content = append(m.Content, scalar(k.String(), "!!str"), c)
		}
		return m
	case reflect.String:
		if v.String() == "" {
			return nil
		}
		return scalar(v.String(), "!!str")
	case reflect.Bool:
		if !v.Bool() {
			return nil
		}
		return scalar("true", "!!bool")
	case reflect.Int, reflect.Int64:
		if v.Int() == 0 {
			return nil
		}
		return scalar(strconv.FormatInt(v.Int(), 10), "!!int")
	case reflect.Float64:
		if v.Float() == 0 {
			return nil
		}
		return scalar(strconv.FormatFloat(v.Float(), 'g', -1, 64), "!!float")
	}
	return nil
}
