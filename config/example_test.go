package config

import (
	"strings"
	"testing"
)

// exampleEnv sets the secrets config.example.yaml requires (it carries no
// working defaults for them) to values a real deployment could use.
var exampleEnv = mapEnv(map[string]string{
	"PEER_SECRET":  "3f6c1d0e9a8b47c2b5e4f1a2d3c4b5a6",
	"CF_API_TOKEN": "cf-8Zq2vKx7LmN4pR9tW1yB3dF6hJ0sA5e",
	"TSIG_KEY":     "m9S0yGq7c3Vb2kXw8JtQ4nR1pL6dF5hA0eZuYiOa1Bc=",
})

func TestExampleLoads(t *testing.T) {
	c, err := Parse("../config.example.yaml", mustRead(t, "../config.example.yaml"), exampleEnv)
	if err != nil {
		t.Fatalf("config.example.yaml:\n%v", err)
	}
	if got, want := c.Summary(), "3 sites, 4 hosts, 2 pools, 3 backends, storage file"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("config.example.yaml warnings: %v", w)
	}
}

// TestExampleNeedsRealSecrets: config.example.yaml does not run on
// placeholders: without its secret variables each is named at its line,
// and a placeholder given through one is refused.
func TestExampleNeedsRealSecrets(t *testing.T) {
	src := mustRead(t, "../config.example.yaml")
	_, err := Parse("../config.example.yaml", src, noEnv)
	if err == nil {
		t.Fatal("config.example.yaml loads with no secrets set")
	}
	for _, name := range []string{"PEER_SECRET", "CF_API_TOKEN", "TSIG_KEY"} {
		if !strings.Contains(err.Error(), "environment variable "+name+" is not set") {
			t.Errorf("without %s: errors do not name it:\n%v", name, err)
		}
	}
	env := func(k string) (string, bool) {
		if k == "PEER_SECRET" {
			return "change-me", true
		}
		return exampleEnv(k)
	}
	_, err = Parse("../config.example.yaml", src, env)
	if err == nil || !strings.Contains(err.Error(), `cluster.secret is "change-me", a well-known placeholder`) {
		t.Errorf("PEER_SECRET=change-me: err = %v, want cluster.secret refused", err)
	}
}
