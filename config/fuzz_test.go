package config

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fuzzFile is the file name Parse is given; every message must carry it.
const fuzzFile = "fuzz.yaml"

// errLine is one line of an *Errors message: FILE:LINE:COL: msg,
// FILE:LINE: msg or FILE: msg.
var errLine = regexp.MustCompile(`^` + regexp.QuoteMeta(fuzzFile) + `:(\d+:(\d+:)?)? `)

// FuzzLoad feeds Parse (what Load calls after reading the file) arbitrary
// bytes. It checks that Parse returns within a few seconds however the
// aliases expand; that an error is a non-empty *Errors whose every entry is
// positioned inside the file and whose every line starts with FILE:LINE:COL,
// FILE:LINE or FILE:; and that an accepted config validates again and is
// left as it was by a second ApplyDefaults. Seeds: testdata/fuzz/FuzzLoad,
// testdata/seeds/*.yaml and config.example.yaml.
func FuzzLoad(f *testing.F) {
	seeds, err := filepath.Glob("testdata/seeds/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range append(seeds, "../config.example.yaml") {
		f.Add(mustRead(f, s))
	}
	env := mapEnv(map[string]string{"HOST": "fuzz.example.com", "REDIS_PASSWORD": "pw", "EMPTY": ""})
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		c, err := Parse(fuzzFile, data, env)
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("Parse took %s on %d bytes", d, len(data))
		}
		if err != nil {
			checkErrors(t, data, err)
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
		if c.File != fuzzFile {
			t.Errorf("File = %q, want %q", c.File, fuzzFile)
		}
		_ = c.Summary()
		_ = c.Warnings()
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		// ApplyDefaults is idempotent: a second call on a second parse of
		// the same bytes (Parse already applied it once) changes nothing,
		// unexported positions and pool order included.
		again, err := Parse(fuzzFile, data, env)
		if err != nil {
			t.Fatalf("a second Parse of the same bytes fails: %v", err)
		}
		again.ApplyDefaults()
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("ApplyDefaults is not idempotent:\nonce:  %+v\ntwice: %+v", c, again)
		}
		if err := again.Validate(); err != nil {
			t.Fatalf("Validate rejects the config after a second ApplyDefaults: %v", err)
		}
	})
}

// checkErrors checks the error Parse returned for data.
func checkErrors(t *testing.T, data []byte, err error) {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) || len(*errs) == 0 {
		t.Fatalf("error %T is not a non-empty *Errors: %v", err, err)
	}
	if n := len(*errs); n > maxErrors+1 {
		t.Errorf("%d errors, more than maxErrors+1 (%d)", n, maxErrors+1)
	}
	// YAML breaks lines at LF, CRLF and a lone CR (YAML 1.2 section 5.4).
	lines := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n")) + 1
	for _, e := range *errs {
		if e == nil {
			t.Fatal("nil *Error in *Errors")
		}
		if e.File != fuzzFile {
			t.Errorf("error %q: File = %q, want %q", e.Error(), e.File, fuzzFile)
		}
		if e.Line < 0 || e.Line > lines || e.Col < 0 || (e.Col > 0 && e.Line == 0) {
			t.Errorf("error %q at %d:%d is outside the %d lines of the file", e.Error(), e.Line, e.Col, lines)
		}
		if e.Msg == "" {
			t.Errorf("error at %d:%d has no message", e.Line, e.Col)
		}
	}
	for line := range strings.SplitSeq(err.Error(), "\n") {
		if !errLine.MatchString(line) {
			t.Errorf("error line %q does not start with %s:LINE:COL, %s:LINE or %s:", line, fuzzFile, fuzzFile, fuzzFile)
		}
	}
}
