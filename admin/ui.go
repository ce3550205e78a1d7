package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// ui holds the status page: plain HTML, CSS and JavaScript, no build step.
// The page fetches /session and the JSON under /api/ and redraws itself
// every few seconds; it holds no data of its own.
//
//go:embed ui/index.html ui/app.js ui/style.css
var ui embed.FS

// pageCSP allows the page's own files and its calls to the same origin only:
// no inline script, no third party.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// routeUI serves the page at GET / and its files under GET /ui/.
func (a *handler) routeUI(mux *http.ServeMux) {
	sub, err := fs.Sub(ui, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	page := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Security-Policy", pageCSP)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Cache-Control", "no-cache")
			next.ServeHTTP(w, r)
		})
	}
	mux.Handle("GET /ui/", page(files))
	mux.Handle("GET /{$}", page(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, sub, "index.html")
	})))
}
