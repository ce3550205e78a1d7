package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

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
	c.ApplyDefaults()
	v := &validator{c: c, file: file, vals: d.vals, bad: d.bad}
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
		return nil, syntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, finish([]*Error{{File: file, Line: extra.Line, Col: extra.Column,
			Msg: "a second YAML document; the config is one document"}})
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxError(file, err)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

func syntaxError(file string, err error) error {
	e := &Error{File: file, Msg: err.Error(), Err: err}
	if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
	}
	return finish([]*Error{e})
}
