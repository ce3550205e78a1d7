package config

import "testing"

func TestExampleLoads(t *testing.T) {
	c, err := Parse("../config.example.yaml", mustRead(t, "../config.example.yaml"), func(string) (string, bool) { return "", false })
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
