package config

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// pos is a 1-based line and column in the file.
type pos struct{ line, col int }

func posOf(n *yaml.Node) pos { return pos{n.Line, n.Column} }

// decoder turns a yaml.v3 node tree into Config with reflection, guided by
// the yaml tags, so that every problem keeps its node's position. It
// records the position of every value it decodes under a path such as
// "sites[0].routes[1].pool" or "pools[web].backends[0]" for the validator.
type decoder struct {
	file   string
	env    func(string) (string, bool)
	errs   []*Error
	vals   map[string]pos      // position of the value at each path
	bad    map[string]bool     // paths that already have an error
	order  map[string][]string // keys of each decoded map, in file order
	budget int                 // nodes left to visit (bounds alias expansion)
}

// maxNodes bounds the work done for one file, aliases included.
const maxNodes = 1 << 20

// maxSecretSize bounds a *_file secret.
const maxSecretSize = 1 << 20

var durationType = reflect.TypeFor[time.Duration]()

func newDecoder(file string, env func(string) (string, bool)) *decoder {
	return &decoder{file: file, env: env, vals: map[string]pos{}, bad: map[string]bool{}, order: map[string][]string{}, budget: maxNodes}
}

func reflectValue(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }

func (d *decoder) errorAt(p pos, path string, err error, format string, args ...any) {
	d.bad[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Col: p.col, Msg: fmt.Sprintf(format, args...), Err: err})
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errorAt(posOf(n), path, nil, format, args...)
}

// resolve follows aliases and charges the node budget. It returns nil when
// the budget is spent.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for hops := 0; n != nil && n.Kind == yaml.AliasNode; hops++ {
		if hops > 100 {
			return nil
		}
		n = n.Alias
	}
	d.budget--
	if d.budget == -1 {
		d.errorf(n, "", "document too large (aliases expand to more than %d nodes)", maxNodes)
	}
	if d.budget < 0 {
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// decode stores the node n into v and records its position under path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.vals[path] = posOf(n)
	if n = d.resolve(n); n == nil {
		return
	}
	if v.Kind() == reflect.Pointer {
		if isNull(n) {
			if v.Type().Elem().Kind() == reflect.Struct {
				v.Set(reflect.New(v.Type().Elem())) // "health:" alone turns it on with defaults
			}
			return
		}
		if d.unset(n, v.Type().Elem()) {
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decodeValue(n, p.Elem(), path)
		v.Set(p)
		return
	}
	if isNull(n) {
		return
	}
	d.decodeValue(n, v, path)
}

// unset reports whether the scalar n, stored through a pointer to t, is
// left unset: a non-string value such as "${FAILS:-}" that expands to "" is
// read as the zero value elsewhere, which for a pointer is nil (the
// default), not a pointer to 0 or false. Expansion errors are left for
// decodeValue to report.
func (d *decoder) unset(n *yaml.Node, t reflect.Type) bool {
	if n.Kind != yaml.ScalarNode || n.Value == "" || t.Kind() == reflect.String || t.Kind() == reflect.Struct {
		return false
	}
	s, err := expand(n.Value, d.env)
	return err == nil && s == ""
}

func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path string) {
	switch {
	case v.Type() == durationType:
		d.duration(n, v, path)
	case v.Kind() == reflect.Struct:
		d.structure(n, v, path)
	case v.Kind() == reflect.Map:
		d.mapping(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

// want describes what a value of type t looks like in YAML.
func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration like 5s"
	case t.Kind() == reflect.Pointer:
		return want(t.Elem())
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "a list of strings"
	case t.Kind() == reflect.Slice:
		return "a list of " + strings.ToLower(t.Elem().Name()) + "s"
	case t.Kind() == reflect.Map:
		return "a mapping of names to " + strings.ToLower(t.Elem().Name()) + " settings"
	default:
		return "a mapping"
	}
}

// got describes the node n for an error message.
func got(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	s := n.Value
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

func (d *decoder) typeError(n *yaml.Node, v reflect.Value, path string) {
	d.errorf(n, path, "expected %s, got %s", want(v.Type()), got(n))
}

// text expands the scalar n. ok is false after an error; empty reports
// that a non-empty scalar expanded to "" (read as the zero value for
// non-string fields).
func (d *decoder) text(n *yaml.Node, v reflect.Value, path string) (s string, empty, ok bool) {
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, v, path)
		return "", false, false
	}
	s, err := expand(n.Value, d.env)
	if err != nil {
		d.errorAt(posOf(n), path, err, "%v", err)
		return "", false, false
	}
	return s, s == "" && n.Value != "", true
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	s, empty, ok := d.text(n, v, path)
	if !ok || empty {
		return
	}
	dur, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		d.errorf(n, path, "expected a duration like 5s, got %q", s)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	s, empty, ok := d.text(n, v, path)
	if !ok {
		return
	}
	if v.Kind() == reflect.String {
		v.SetString(s)
		return
	}
	if empty {
		return
	}
	bad := func() { d.errorf(n, path, "expected %s, got %q", want(v.Type()), s) }
	switch v.Kind() {
	case reflect.Bool:
		switch strings.ToLower(s) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			bad()
		}
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v.OverflowInt(i) {
			bad()
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			bad()
			return
		}
		v.SetFloat(f)
	default:
		panic("config: unsupported field kind " + v.Kind().String())
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, v, path)
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, v, path)
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	for _, p := range d.pairs(n, path, 0) {
		k, val := p[0], p[1]
		name := k.Value
		epath := path + "[" + name + "]"
		if name == "" {
			d.errorf(k, epath, "empty name")
			continue
		}
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, elem, epath)
		v.SetMapIndex(reflect.ValueOf(name), elem)
		d.order[path] = append(d.order[path], name)
	}
}

// fields describes the yaml keys of a struct type.
type fields struct {
	index   map[string]int
	names   []string
	secrets []secret // each X / X_file pair
	// shorthand is the field a scalar stands for (tag option
	// ",shorthand"), or -1.
	shorthand int
	// lists maps a key to the field (tag list:"KEY") that takes the key's
	// list or mapping form, the key's own field taking a scalar.
	lists map[string]int
}

// secret is a value field X with a sibling X_file.
type secret struct {
	val, file       int
	valKey, fileKey string
}

func fieldsOf(t reflect.Type) fields {
	f := fields{index: map[string]int{}, shorthand: -1, lists: map[string]int{}}
	for i := range t.NumField() {
		if l := t.Field(i).Tag.Get("list"); l != "" {
			f.lists[l] = i
		}
		name, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if opts == "shorthand" {
			f.shorthand = i
		}
		f.index[name] = i
		f.names = append(f.names, name)
	}
	for _, name := range f.names {
		base, ok := strings.CutSuffix(name, "_file")
		vi, has := f.index[base]
		if ok && has && t.Field(vi).Type.Kind() == reflect.String {
			f.secrets = append(f.secrets, secret{vi, f.index[name], base, name})
		}
	}
	return f
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	f := fieldsOf(v.Type())
	if n.Kind == yaml.ScalarNode && f.shorthand >= 0 {
		// A struct whose field is tagged ",shorthand" may be written as
		// that field alone: "http://10.0.0.11" for {url: "http://10.0.0.11"},
		// "true" for {enabled: true}.
		sv := v.Field(f.shorthand)
		if sv.Kind() == reflect.Pointer {
			p := reflect.New(sv.Type().Elem())
			d.decodeValue(n, p.Elem(), path)
			sv.Set(p)
			return
		}
		d.decodeValue(n, sv, path)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, v, path)
		return
	}
	for _, p := range d.pairs(n, path, 0) {
		k, val := p[0], p[1]
		i, ok := f.index[k.Value]
		if !ok && path == "" && strings.HasPrefix(k.Value, "x-") {
			continue // top-level extension key, a place for YAML anchors
		}
		if !ok {
			d.errorf(k, join(path, k.Value), "unknown key %q%s", k.Value, suggest(k.Value, f.names))
			continue
		}
		if li, ok := f.lists[k.Value]; ok && d.listForm(val, v.Field(li), join(path, k.Value)) {
			continue
		}
		d.decode(val, v.Field(i), join(path, k.Value))
	}
	d.secrets(v, f, path)
}

// secrets reads each X_file into X.
func (d *decoder) secrets(v reflect.Value, f fields, path string) {
	for _, s := range f.secrets {
		valField, fileField := v.Field(s.val), v.Field(s.file)
		valKey, fileKey := s.valKey, s.fileKey
		valPath, filePath := join(path, valKey), join(path, fileKey)
		name := fileField.String()
		if name == "" || d.bad[filePath] {
			continue
		}
		if valField.String() != "" {
			d.errorAt(d.vals[filePath], filePath, nil, "both %s and %s are set; use one", valKey, fileKey)
			continue
		}
		secret, err := readSecret(name)
		if err != nil {
			d.errorAt(d.vals[filePath], filePath, err, "%s: %v", fileKey, err)
			continue
		}
		valField.SetString(secret)
		d.vals[valPath] = d.vals[filePath]
	}
}

// readSecret reads a secret file, dropping trailing newlines.
func readSecret(name string) (string, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > maxSecretSize {
		return "", fmt.Errorf("%s is larger than %d bytes", name, maxSecretSize)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return s, nil
}

// pairs returns the key/value pairs of mapping n: duplicate keys are
// errors, and "<<" merge keys (YAML 1.1) contribute the keys the mapping
// does not set itself.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) [][2]*yaml.Node {
	var out, merged [][2]*yaml.Node
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, path, depth)...)
			continue
		}
		if k.Kind == yaml.AliasNode && k.Alias != nil && k.Alias.Kind == yaml.ScalarNode {
			k = k.Alias
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, path, "expected a key, got %s", got(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, join(path, k.Value), "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, [2]*yaml.Node{k, val})
	}
	for _, p := range merged {
		if _, set := seen[p[0].Value]; !set {
			seen[p[0].Value] = p[0]
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) mergeSources(n *yaml.Node, path string, depth int) [][2]*yaml.Node {
	if depth > 10 {
		d.errorf(n, path, "merge keys nested too deeply")
		return nil
	}
	at := n
	if n = d.resolve(n); n == nil {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n, path, depth+1)
	case yaml.SequenceNode:
		var out [][2]*yaml.Node
		for _, c := range n.Content {
			if r := d.resolve(c); r != nil && r.Kind == yaml.MappingNode {
				out = append(out, d.pairs(r, path, depth+1)...)
			} else if r != nil {
				d.errorf(c, path, "<< expects a mapping or a list of mappings")
			}
		}
		return out
	}
	d.errorf(at, path, "<< expects a mapping or a list of mappings")
	return nil
}

// listForm decodes n into the slice field lv when n is a list, or a
// mapping (one element, recorded at path itself), and reports whether it
// did; a scalar is left to the key's own field (acme.ca: letsencrypt).
func (d *decoder) listForm(n *yaml.Node, lv reflect.Value, path string) bool {
	r := n
	for hops := 0; r != nil && r.Kind == yaml.AliasNode && hops < 100; hops++ {
		r = r.Alias
	}
	switch {
	case r == nil || r.Kind == yaml.ScalarNode:
		return false
	case r.Kind == yaml.MappingNode:
		s := reflect.MakeSlice(lv.Type(), 1, 1)
		d.decode(n, s.Index(0), path)
		lv.Set(s)
	default:
		d.decode(n, lv, path)
	}
	return true
}
