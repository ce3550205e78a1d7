package config

import (
	"errors"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and returns either a config or
// an *Errors. Seeds: testdata/seeds/*.yaml and config.example.yaml.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/seeds/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range append(seeds, "../config.example.yaml") {
		f.Add(mustRead(f, s))
	}
	env := mapEnv(map[string]string{"HOST": "fuzz.example.com", "REDIS_PASSWORD": "pw"})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data, env)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(*errs) == 0 {
				t.Fatalf("error %T is not a non-empty *Errors: %v", err, err)
			}
			_ = err.Error()
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
		_ = c.Summary()
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
	})
}
