package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Load reads the config file at path and parses it with the process
// environment; see Parse. The returned error is an *Errors whose entries
// are formatted PATH:LINE:COL: message.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data, os.LookupEnv)
}

// Parse decodes a config from data: it rejects unknown keys and wrong
// types, expands ${VAR} and ${VAR:-default} in scalar values with
// lookupEnv (nil: every variable unset), reads every *_file secret into
// its value field, applies defaults and validates the result. file is the
// name used in error messages and stored in Config.File.
//
// On failure the config is nil and the error is an *Errors listing every
// problem found, each at its FILE:LINE:COL. Parse reads the files named by
// *_file keys (paths are used as written, relative to the working
// directory) and nothing else; it is safe for concurrent use.
func Parse(file string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	return parse(file, data, lookupEnv, false)
}

// parse is Parse; preview also checks the features this build refuses
// (see notBuilt) as if they were built, for their tests.
func parse(file string, data []byte, lookupEnv func(string) (string, bool), preview bool) (*Config, error) {
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	d := newDecoder(file, lookupEnv)
	c := &Config{}
	if root != nil {
		d.decode(root, reflectValue(c), "")
	} else {
		d.vals[""] = pos{1, 1}
	}
	c.File = file
	c.vals = d.vals
	c.poolOrder = d.order["pools"]
	c.ApplyDefaults()
	v := newValidator(c, d.bad)
	v.preview = preview
	v.run()
	if err := finish(append(d.errs, v.errs...)); err != nil {
		return nil, err
	}
	return c, nil
}

var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the top-level node of the single document in data, or
// nil for an empty document.
func parseYAML(file string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(file, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, finish([]*Error{{File: file, Line: extra.Line, Col: extra.Column,
			Msg: "a second YAML document; the config is one document"}})
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(file, data, err)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// syntaxError positions a yaml.v3 syntax error, which names only a line:
// at a tab in the indentation of the reported line (or, for the errors
// that name a tab, of the line after it, which yaml.v3 reports one line
// early), else at the first non-blank character of the reported line.
func syntaxError(file string, data []byte, err error) error {
	e := &Error{File: file, Msg: err.Error(), Err: err}
	if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
		lines := strings.Split(string(data), "\n")
		candidates := []int{e.Line}
		if strings.Contains(m[2], "tab character") {
			candidates = append(candidates, e.Line+1)
		}
		for _, n := range candidates {
			if n < 1 || n > len(lines) {
				continue
			}
			if col := indentTab(lines[n-1]); col > 0 {
				e.Line, e.Col = n, col
				e.Msg = "invalid YAML: tabs are not allowed for indentation in YAML; indent with spaces"
				return finish([]*Error{e})
			}
		}
		if e.Line <= len(lines) {
			e.Col = firstNonBlank(lines[e.Line-1])
		}
	}
	return finish([]*Error{e})
}

// indentTab is the 1-based column of the first tab in the indentation of
// line (its leading spaces and tabs), or 0.
func indentTab(line string) int {
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\t':
			return i + 1
		case ' ':
		default:
			return 0
		}
	}
	return 0
}

// firstNonBlank is the 1-based column of the first character of line that
// is not a space or a tab, or 0 for a blank line.
func firstNonBlank(line string) int {
	if i := strings.IndexFunc(line, func(r rune) bool { return r != ' ' && r != '\t' && r != '\r' }); i >= 0 {
		return utf8.RuneCountInString(line[:i]) + 1
	}
	return 0
}
