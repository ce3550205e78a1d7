package config

import "fmt"

// Summary describes c in one line for edge validate, such as
// "3 sites, 5 hosts, 2 pools, 4 backends, storage file".
func (c *Config) Summary() string {
	hosts, backends := 0, 0
	for _, s := range c.Sites {
		hosts += len(s.Hosts)
	}
	for _, p := range c.Pools {
		backends += len(p.Backends)
	}
	storage := c.Storage.Type
	if storage == "" {
		storage = "file"
	}
	return fmt.Sprintf("%s, %s, %s, %s, storage %s",
		plural(len(c.Sites), "site"), plural(hosts, "host"),
		plural(len(c.Pools), "pool"), plural(backends, "backend"), storage)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
