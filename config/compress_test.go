package config

import (
	"slices"
	"testing"
)

// compressSite is a one-site config whose site sets compress: c.
func compressSite(c string) string {
	return `
sites:
  - hosts: [a.example.com]
    compress: ` + c + `
    routes: [{path: /, pool: web}]
pools:
  web: {backends: ["http://127.0.0.1:8080"]}
`
}

func TestCompressForms(t *testing.T) {
	for _, tc := range []struct {
		name       string
		compress   string // "" leaves the key out
		on         bool
		minSize    int64
		types      []string
		algorithms []string
	}{
		{"absent", "", false, 0, nil, nil},
		{"true", "true", true, 1024, nil, nil},
		{"false", "false", false, 1024, nil, nil},
		{"a mapping alone turns it on", "{min_size: 2KB}", true, 2000, nil, nil},
		{"null is on with defaults", "null", true, 1024, nil, nil},
		{"every key", "{enabled: true, min_size: 0, types: [text/*, application/json], algorithms: [gzip]}", true, 0, []string{"text/*", "application/json"}, []string{"gzip"}},
		{"enabled false in a mapping", "{enabled: false, min_size: 1MiB}", false, 1 << 20, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := base
			if tc.compress != "" {
				src = compressSite(tc.compress)
			}
			c := mustParse(t, src, noEnv).Sites[0].Compress
			if c.On() != tc.on {
				t.Fatalf("On() = %v, want %v (%+v)", c.On(), tc.on, c)
			}
			if c == nil {
				return
			}
			if c.MinSizeBytes != tc.minSize || !slices.Equal(c.Types, tc.types) || !slices.Equal(c.Algorithms, tc.algorithms) {
				t.Errorf("compress = min %d, types %v, algorithms %v; want %d, %v, %v", c.MinSizeBytes, c.Types, c.Algorithms, tc.minSize, tc.types, tc.algorithms)
			}
		})
	}
}

func TestCompressErrors(t *testing.T) {
	for _, tc := range []struct {
		name, compress string
		want           []string
	}{
		{"not a bool", "maybe", []string{`4:15: expected true or false, got "maybe"`}},
		{"unknown key", "{min: 1KB}", []string{`4:16: unknown key "min"`}},
		{"bad size", "{min_size: lots}", []string{`4:26: invalid min_size "lots"`}},
		{"bad types", "{types: [json, text/*, \"*/*\", \"text/ht ml\"]}", []string{
			`4:24: invalid media type "json"`,
			`4:38: invalid media type "*/*"`,
			`4:45: invalid media type "text/ht ml"`,
		}},
		{"bad algorithms", "{algorithms: [br, gzip, gzip]}", []string{
			`4:29: unknown algorithm "br": expected zstd or gzip`,
			`4:39: algorithm gzip is listed twice`,
		}},
		{"no algorithms", "{algorithms: []}", []string{`4:28: no algorithms`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkProblems(t, problems(t, compressSite(tc.compress), noEnv), tc.want)
		})
	}
}

func TestCompressEffectiveRoundTrips(t *testing.T) {
	for _, src := range []string{"true", "false", "{types: [text/html], algorithms: [gzip, zstd]}"} {
		c := mustParse(t, compressSite(src), noEnv)
		out, err := c.Effective()
		if err != nil {
			t.Fatal(err)
		}
		again := mustParse(t, string(out), noEnv)
		a, b := c.Sites[0].Compress, again.Sites[0].Compress
		if a.On() != b.On() || a.MinSizeBytes != b.MinSizeBytes || !slices.Equal(a.Types, b.Types) || !slices.Equal(a.Algorithms, b.Algorithms) {
			t.Errorf("compress: %s: %+v, after edge config's output %+v", src, a, b)
		}
	}
}
