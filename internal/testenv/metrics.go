package testenv

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Sample is one line of the Prometheus text format.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is a parsed /metrics page.
type Metrics []Sample

// FetchMetrics GETs url and parses the Prometheus text format.
func FetchMetrics(url string) (Metrics, error) {
	resp, err := adminClient.Get(url)
	if err != nil {
		return nil, fmt.Errorf("fetching metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetching metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching metrics: %s", resp.Status)
	}
	return ParseMetrics(string(b))
}

// ParseMetrics parses the Prometheus text exposition format (comments are
// skipped; timestamps are ignored).
func ParseMetrics(text string) (Metrics, error) {
	var out Metrics
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d %q: %w", n+1, line, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name = line[:i]
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq < 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
				return s, fmt.Errorf("bad label")
			}
			key := strings.TrimSpace(rest[:eq])
			rest = rest[eq+2:]
			var val strings.Builder
			j := 0
			for ; j < len(rest) && rest[j] != '"'; j++ {
				if rest[j] == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[j])
					}
					continue
				}
				val.WriteByte(rest[j])
			}
			if j >= len(rest) {
				return s, fmt.Errorf("unterminated label value")
			}
			s.Labels[key] = val.String()
			rest = rest[j+1:]
		}
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.Value = v
	return s, nil
}

// Find returns the samples named name whose labels include every pair in
// labels ("key", "value", ...).
func (m Metrics) Find(name string, labels ...string) []Sample {
	var out []Sample
next:
	for _, s := range m {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if s.Labels[labels[i]] != labels[i+1] {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// Sum adds up the values of Find(name, labels...).
func (m Metrics) Sum(name string, labels ...string) float64 {
	var t float64
	for _, s := range m.Find(name, labels...) {
		t += s.Value
	}
	return t
}

// Get returns the value of the only sample matching name and labels, and
// whether there was exactly one.
func (m Metrics) Get(name string, labels ...string) (float64, bool) {
	f := m.Find(name, labels...)
	if len(f) != 1 {
		return 0, false
	}
	return f[0].Value, true
}

// Dump renders the samples of the named metrics, sorted, for messages.
func (m Metrics) Dump(names ...string) string {
	var lines []string
	for _, s := range m {
		for _, n := range names {
			if s.Name == n {
				keys := make([]string, 0, len(s.Labels))
				for k := range s.Labels {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				var ls []string
				for _, k := range keys {
					ls = append(ls, fmt.Sprintf("%s=%q", k, s.Labels[k]))
				}
				lines = append(lines, fmt.Sprintf("%s{%s} %g", s.Name, strings.Join(ls, ","), s.Value))
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
