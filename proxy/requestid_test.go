package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestRequestIDAndAccessLog: the backend gets the client's X-Request-Id or
// one edge made; the access log line carries it and every field an operator
// reads: protocol, method, host, path, query (unless left out), status,
// bytes, durations, backend, client, user agent, TLS version and SNI.
func TestRequestIDAndAccessLog(t *testing.T) {
	var seen []string
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("X-Request-Id"))
		w.Write([]byte("hello"))
	}))
	t.Cleanup(b.Close)
	var buf bytes.Buffer
	cfg := simpleConfig(mustURL(t, b.URL))
	cfg.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
	cfg.AccessLog = true
	h := newHandler(t, cfg)
	withTLS := func(r *http.Request) {
		r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, ServerName: "example.com"}
		r.Header.Set("User-Agent", "curl/8.5")
		r.RemoteAddr = "192.0.2.8:4444"
	}
	serve(h, "GET", "https://example.com/a?x=1", withTLS, func(r *http.Request) { r.Header.Set("X-Request-Id", "abc-123") })
	serve(h, "GET", "https://example.com/b", withTLS)
	serve(h, "GET", "https://example.com/c", withTLS, func(r *http.Request) { r.Header.Set("X-Request-Id", "has space") })

	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	if len(seen) != 3 || seen[0] != "abc-123" || !generated.MatchString(seen[1]) || !generated.MatchString(seen[2]) {
		t.Fatalf("backend saw request ids %q: want the client's, then two made by edge", seen)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("%d access log lines:\n%s", len(lines), buf.String())
	}
	l := lines[0]
	for k, want := range map[string]any{
		"request_id": "abc-123", "proto": "HTTP/1.1", "method": "GET", "host": "example.com", "path": "/a", "query": "x=1",
		"status": float64(200), "bytes": float64(5), "backend": b.URL, "remote": "192.0.2.8", "user_agent": "curl/8.5",
		"tls": "TLS 1.3", "sni": "example.com", "site": "example.com",
	} {
		if l[k] != want {
			t.Errorf("access log %s = %v, want %v", k, l[k], want)
		}
	}
	for _, k := range []string{"duration", "upstream_duration"} {
		if d, ok := l[k].(float64); !ok || d <= 0 {
			t.Errorf("access log %s = %v, want a positive duration", k, l[k])
		}
	}
	if lines[1]["request_id"] != seen[1] {
		t.Errorf("the log's id %v is not the one the backend got (%s)", lines[1]["request_id"], seen[1])
	}

	buf.Reset()
	cfg.AccessLogNoQuery = true
	serve(newHandler(t, cfg), "GET", "https://example.com/a?token=secret", withTLS)
	if strings.Contains(buf.String(), "secret") {
		t.Errorf("the query is in the log with AccessLogNoQuery:\n%s", buf.String())
	}
}
