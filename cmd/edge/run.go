package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/farmedge/edge/admin"
	"github.com/farmedge/edge/challenge"
	"github.com/farmedge/edge/config"
	"github.com/farmedge/edge/export"
	"github.com/farmedge/edge/h1"
	"github.com/farmedge/edge/listener"
	"github.com/farmedge/edge/proxy"
	"github.com/farmedge/edge/tlsmgr"
	"github.com/farmedge/edge/tlsmgr/redisstore"
)

// drainTimeout bounds how long SIGTERM waits for in-flight requests.
const drainTimeout = 30 * time.Second

// server is one running edge: process-wide parts (metrics, the certificate
// manager, listeners) and the current generation built from the config.
type server struct {
	path   string
	node   string         // this instance's name in X-Edge-Node and /api/locks
	hup    chan os.Signal // SIGHUP, caught from the start (its default action kills)
	logger *zap.Logger
	slog   *slog.Logger

	reg      *prometheus.Registry
	smetrics *redisstore.Metrics
	pmetrics *proxy.Metrics
	cmetrics *challenge.Metrics
	// The long-lived owners: each takes every new plan and applies the
	// difference itself.
	tm       *tlsmgr.Manager
	pstate   *proxy.State
	emetrics *export.Metrics
	// conns counts the public listeners' connections per client address;
	// apply sets its cap (limits.max_conns_per_ip).
	conns    *listener.ConnLimiter
	lmetrics *listener.Metrics
	// disp delivers certificates to export targets; made with the storage
	// by the first apply, run until close.
	disp     *export.Dispatcher
	dispStop context.CancelFunc
	dispDone chan struct{}
	// events are the recent orders, exports and reloads (/api/events,
	// the status page); see events.go.
	events *admin.Events

	reloadOK prometheus.Gauge
	reloadTS prometheus.Gauge
	sd       *notifier // systemd's notify socket (notify.go); nil outside systemd

	mu       sync.Mutex // serialises reloads; guards store, storeCfg, applied
	store    certmagic.Storage
	storeCfg config.Storage
	applied  []byte // the bytes of the config file last applied
	gen      atomic.Pointer[generation]
}

// generation is what one config builds; requests use the one current when
// they arrive and finish on it.
type generation struct {
	cfg    *config.Config
	proxy  *proxy.Handler
	http   http.Handler     // the plain-HTTP listener's handler: challenges, peers, redirects
	peers  *challenge.Peers // nil without cluster:
	cancel context.CancelFunc
}

// close ends what the generation owns once no new request reaches it:
// health checkers, idle backend connections, the peers' idle connections.
func (g *generation) close() {
	g.cancel()
	g.proxy.Close()
	g.peers.Close()
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("run")
	path := fs.String("config", defaultConfigPath(), "config file")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	data, err := os.ReadFile(*path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	cfg, err := config.Parse(*path, data, os.LookupEnv)
	if err != nil {
		return err
	}
	logger, err := buildLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer func() { _ = logger.Sync() }()
	// An edge killed during an exec export left the certificate and its
	// key in a temporary directory; remove those of edges that ended.
	if gone, err := export.SweepTemp(""); err != nil {
		logger.Warn("removing temporary certificate directories left by edges that ended", zap.Strings("removed", gone), zap.Error(err))
	} else if len(gone) > 0 {
		logger.Info("removed temporary certificate directories left by edges that ended", zap.Strings("removed", gone))
	}
	// go-redis logs through a process-wide logger of its own (unstructured,
	// to stderr); main owns process-wide state, so route it into ours.
	redis.SetLogger(redisLogger{logger.Named("redis")})
	s, err := newServer(*path, logger, nodeName(cfg))
	if err != nil {
		return err
	}
	s.applied = data
	s.hup = make(chan os.Signal, 1)
	signal.Notify(s.hup, syscall.SIGHUP)
	defer signal.Stop(s.hup)
	// Open the sockets before any order starts, so the CA's first
	// validation request queues in the backlog instead of being refused.
	lns, err := s.listen(cfg)
	if err != nil {
		return err
	}
	if err := s.apply(ctx, cfg); err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return err
	}
	defer s.close()
	s.sd = newNotifier(logger.Named("systemd"))
	defer s.sd.startWatchdog()() // until serve has drained
	return s.serve(ctx, cfg, lns)
}

// close stops the owners that outlive generations: certificate management
// (its orders and locks) first, then the storage they used.
func (s *server) close() {
	if s.dispStop != nil {
		// Deliveries in flight stop; records say what is left, and the
		// next start (or another edge) finishes it.
		s.dispStop()
		<-s.dispDone
	}
	s.tm.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		closeStorage(s.store)
		s.store = nil
	}
}

// nodeName is hostname:port of the plain-HTTP listener: unique per edge on
// one host, readable in preflight output.
func nodeName(cfg *config.Config) string {
	host, _ := os.Hostname()
	_, port, _ := splitListen(cfg.Listen.HTTP)
	return fmt.Sprintf("%s:%d", host, port)
}

func newServer(path string, logger *zap.Logger, node string) (*server, error) {
	s := &server{
		path:   path,
		node:   node,
		logger: logger,
		slog:   slog.New(zapslog.NewHandler(logger.Core(), zapslog.WithName("proxy"))),
		reg:    prometheus.NewRegistry(),
		pstate: proxy.NewState(),
		events: admin.NewEvents(0),
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newBuildInfoGauge())
	var err error
	if s.pmetrics, err = proxy.NewMetrics(s.reg); err != nil {
		return nil, err
	}
	if s.cmetrics, err = challenge.NewMetrics(s.reg); err != nil {
		return nil, err
	}
	if s.smetrics, err = redisstore.NewMetrics(s.reg); err != nil {
		return nil, err
	}
	if s.emetrics, err = export.NewMetrics(s.reg); err != nil {
		return nil, err
	}
	if s.lmetrics, err = listener.NewMetrics(s.reg); err != nil {
		return nil, err
	}
	s.conns = listener.NewConnLimiter(0)
	tmetrics, err := tlsmgr.NewMetrics(s.reg)
	if err != nil {
		return nil, err
	}
	s.tm = tlsmgr.New(logger.Named("tls"), tmetrics)
	s.reg.MustRegister(s.tm)
	s.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edge_config_last_reload_successful",
		Help: "1 if the last config load or reload succeeded, else 0.",
	})
	s.reloadTS = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "edge_config_last_reload_success_timestamp_seconds",
		Help: "When the config was last loaded successfully.",
	})
	s.reg.MustRegister(s.reloadOK, s.reloadTS)
	return s, nil
}

// apply builds the plan of cfg and hands each owner its part: a new proxy
// handler tree on the process's proxy State (backends keep their health),
// tlsmgr's options (it keeps what did not change), the HTTP handler. On error
// the running generation keeps serving untouched. Storage is opened by the
// first apply; a later one that changes it is refused, as a change of listen
// is: certificates, account and locks live there.
func (s *server) apply(ctx context.Context, cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pl, err := buildPlan(cfg)
	if err != nil {
		return err
	}
	if s.store != nil && !cfg.Storage.Equal(s.storeCfg) {
		return cfg.ErrorAt("storage", "storage changed: restart edge to use the new storage (certificates, the ACME account and locks live there)")
	}
	fresh := s.store == nil
	storage := s.store
	if fresh {
		if storage, err = buildStorage(cfg.Storage, storageDeps{node: s.node, logger: s.logger.Named("storage"), metrics: s.smetrics}); err != nil {
			return cfg.ErrorAt("storage", "%v", err)
		}
	}
	s.conns.SetMax(cfg.Limits.MaxConnsPerIP)
	pc := pl.proxy
	pc.State, pc.Metrics, pc.Logger = s.pstate, s.pmetrics, s.slog
	pc.AccessLog = pc.AccessLog && s.slog != nil
	pc.CertCovers = s.tm.Covers
	gctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ph, err := proxy.New(gctx, pc)
	if err != nil {
		cancel()
		if fresh {
			closeStorage(storage)
		}
		return err
	}
	if fresh {
		s.disp, err = export.NewDispatcher(export.Options{
			Source: certSource{s.tm}, Store: storage, Node: s.node,
			Interval: cfg.ExportCheckInterval, Backoff: export.Retry,
			Logger: s.slog.With("component", "export"), Metrics: s.emetrics,
			OnResult: s.exportResult,
		})
		if err != nil {
			ph.Close()
			cancel()
			closeStorage(storage)
			return err
		}
	}
	topts := pl.tls
	topts.Storage = storage
	topts.OnObtained = s.disp.Notify
	topts.OnOrder = s.orderEnded
	// Names are managed for the life of the process, not of a request.
	if err := s.tm.Apply(context.WithoutCancel(ctx), topts); err != nil {
		ph.Close()
		cancel()
		if fresh {
			closeStorage(storage)
		}
		return err
	}
	gen := &generation{cfg: cfg, proxy: ph, cancel: cancel}
	gen.http, gen.peers = s.buildHTTP(cfg, storage, ph)
	if old := s.gen.Swap(gen); old != nil {
		old.close()
	}
	s.store, s.storeCfg = storage, cfg.Storage
	if m, ok := storage.(*tlsmgr.Mirror); ok && fresh {
		if rs, ok := m.Storage.(*redisstore.Storage); ok {
			s.reg.MustRegister(rs) // edge_storage_up, lock lease ends
		}
	}
	s.disp.Apply(pl.exports)
	if s.dispDone == nil {
		dctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		s.dispStop, s.dispDone = stop, make(chan struct{})
		go func() {
			defer close(s.dispDone)
			s.disp.Run(dctx)
		}()
	}
	s.reloadOK.Set(1)
	s.reloadTS.SetToCurrentTime()
	for _, w := range cfg.Warnings() {
		s.logger.Warn("config warning", zap.String("warning", w.Error()))
	}
	s.logger.Info("config applied", zap.String("config", s.path), zap.String("summary", cfg.Summary()))
	return nil
}

// closeStorage releases a storage's connections, if it has any.
func closeStorage(st certmagic.Storage) {
	if m, ok := st.(*tlsmgr.Mirror); ok {
		st = m.Storage
	}
	if c, ok := st.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// ready is /readyz: every configured name has a certificate in memory.
// A shared store that cannot be reached does not make edge unready (it
// serves from memory and its local copy) but is reported, as "storage:
// unreachable: ...", so an operator sees it.
func (s *server) ready() (bool, []string) {
	ok, missing := s.tm.Ready()
	s.mu.Lock()
	st := s.store
	s.mu.Unlock()
	if m, isMirror := st.(*tlsmgr.Mirror); isMirror {
		if rs, isRedis := m.Storage.(*redisstore.Storage); isRedis {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := rs.Ping(ctx); err != nil {
				missing = append(missing, "storage unreachable (serving from memory and the local copy): "+err.Error())
			}
		}
	}
	return ok, missing
}

// storedLoadWait bounds how long READY=1 waits for the certificates in
// storage to reach memory.
const storedLoadWait = 15 * time.Second

// waitStoredLoaded waits, up to limit, until every configured name that
// has a certificate in storage has it in memory. certmagic's ManageAsync
// loads stored certificates on goroutines of its own (OCSP stapling may
// use the network), so a handshake right after Apply could find none;
// systemd's READY=1 must not come before they serve. Names without a
// stored certificate (still to be obtained) are not waited for.
func (s *server) waitStoredLoaded(ctx context.Context, limit time.Duration) {
	deadline := time.Now().Add(limit)
	var waiting []string
	if _, missing := s.tm.Ready(); len(missing) > 0 {
		for _, name := range missing {
			if _, err := s.tm.StoredCertificate(ctx, name); err == nil {
				waiting = append(waiting, name)
			}
		}
	}
	for len(waiting) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
		_, missing := s.tm.Ready()
		lacking := make(map[string]bool, len(missing))
		for _, name := range missing {
			lacking[name] = true
		}
		still := waiting[:0]
		for _, name := range waiting {
			if lacking[name] {
				still = append(still, name)
			}
		}
		waiting = still
	}
	if len(waiting) > 0 {
		s.logger.Warn("certificates in storage not yet in memory", zap.Int("count", len(waiting)), zap.Strings("first", waiting[:min(len(waiting), 5)]))
	}
}

// locks lists the storage locks held across the cluster (redis only).
func (s *server) locks(r *http.Request) (any, error) {
	s.mu.Lock()
	st := s.store
	s.mu.Unlock()
	if m, ok := st.(*tlsmgr.Mirror); ok {
		st = m.Storage
	}
	rs, ok := st.(*redisstore.Storage)
	if !ok {
		return nil, &admin.StatusError{Code: http.StatusNotFound, Err: errors.New("lock listing needs storage type redis")}
	}
	return rs.Locks(r.Context())
}

// reload re-reads the config file; a bad file is logged and leaves the
// running config serving. A file whose bytes did not change is not applied
// again when the trigger is the file watcher; SIGHUP always applies (a
// *_file secret or a ${VAR} may have changed), and each owner still keeps
// what did not change.
func (s *server) reload(ctx context.Context, why string, data []byte) {
	if data == nil {
		var err error
		if data, err = os.ReadFile(s.path); err != nil {
			s.reloadFailed(why, fmt.Errorf("reading config: %w", err))
			return
		}
	} else {
		s.mu.Lock()
		same := bytes.Equal(data, s.applied)
		s.mu.Unlock()
		if same {
			return
		}
	}
	s.sd.reloading()
	defer func() { s.sd.ready("serving (" + s.gen.Load().cfg.Summary() + ")") }() // the old config if this one failed
	cfg, err := config.Parse(s.path, data, os.LookupEnv)
	if err == nil {
		old := s.gen.Load().cfg
		// Sockets are bound at start. Refuse rather than half-apply: the admin
		// token rule depends on the address actually bound.
		switch {
		case cfg.Listen != old.Listen:
			err = cfg.ErrorAt("listen", "listen changed: restart edge to apply it")
		case cfg.Admin.Listen != old.Admin.Listen:
			err = cfg.ErrorAt("admin.listen", "admin.listen changed: restart edge to apply it")
		case !reflect.DeepEqual(cfg.ProxyProtocol, old.ProxyProtocol):
			err = cfg.ErrorAt("proxy_protocol", "proxy_protocol changed: restart edge to apply it (the listeners take it at start)")
		}
		if serverLimits(cfg.Limits) != serverLimits(old.Limits) {
			s.logger.Warn("limits changed: restart edge to apply them", zap.String("at", cfg.ErrorAt("limits", "here").Error()))
		}
		if cfg.Log.Level != old.Log.Level || cfg.Log.Format != old.Log.Format {
			s.logger.Warn("log level or format changed: restart edge to apply them", zap.String("at", cfg.ErrorAt("log", "here").Error()))
		}
		if err == nil {
			err = s.apply(ctx, cfg)
		}
	}
	s.mu.Lock()
	s.applied = data // a bad file is not retried until it changes again
	s.mu.Unlock()
	if err != nil {
		s.reloadFailed(why, err)
		return
	}
	s.logger.Info("reloaded", zap.String("trigger", why))
	s.events.Add(admin.Event{Kind: admin.EventReloaded, Detail: why + ": " + cfg.Summary()})
}

// serverLimits are the limits the http.Servers take at start; the others
// (rates, write_timeout, max_conns_per_ip) apply on reload.
func serverLimits(l config.Limits) [4]int64 {
	return [4]int64{int64(l.ReadHeaderTimeout), int64(l.ReadTimeout), int64(l.IdleTimeout), int64(l.MaxHeaderBytes)}
}

func (s *server) reloadFailed(why string, err error) {
	s.reloadOK.Set(0)
	s.events.Add(admin.Event{Kind: admin.EventReloadFailed, Detail: why + ": " + err.Error()})
	s.logger.Error("reload failed; keeping the running config", zap.String("config", s.path), zap.String("trigger", why), zap.Error(err))
}

// listen opens the http, https and admin sockets, in that order.
// listen opens the http, https and admin sockets. The public two take
// the PROXY protocol from proxy_protocol.from and count connections per
// client address (limits.max_conns_per_ip) before TLS or HTTP see them.
func (s *server) listen(cfg *config.Config) ([]net.Listener, error) {
	pp, err := buildProxyProtocol(cfg)
	if err != nil {
		return nil, err
	}
	var lns []net.Listener
	for _, l := range []struct {
		name, addr string
		public     bool
	}{
		{"http", cfg.Listen.HTTP, true}, {"https", cfg.Listen.HTTPS, true}, {"admin", cfg.Admin.Listen, false},
	} {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, o := range lns {
				o.Close()
			}
			return nil, fmt.Errorf("listening for %s on %s: %w", l.name, l.addr, err)
		}
		if l.public {
			o := pp
			o.Name, o.Limiter, o.Metrics = l.name, s.conns, s.lmetrics
			o.Logger = s.slog.With("component", "listener")
			ln = listener.Wrap(ln, o)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// httpServer is one of edge's three HTTP servers.
type httpServer struct {
	name  string
	srv   *http.Server
	tls   bool
	conns *newConns
	// h1, for the HTTPS listener, serves HTTP/1.1 itself and hands h2
	// connections to srv (package h1); nil: srv serves everything.
	h1 *h1.Server
}

// serveOn runs the server on ln until it is shut down.
func (l httpServer) serveOn(ln net.Listener) error {
	switch {
	case l.h1 != nil:
		return l.h1.Serve(ln)
	case l.tls:
		return l.srv.ServeTLS(ln, "", "")
	default:
		return l.srv.Serve(ln)
	}
}

// shutdown drains the server (Shutdown), closing what is left when ctx
// ends.
func (l httpServer) shutdown(ctx context.Context) error {
	if l.h1 != nil {
		err := l.h1.Shutdown(ctx)
		if err != nil {
			_ = l.h1.Close()
		}
		return err
	}
	err := l.srv.Shutdown(ctx)
	if err != nil {
		_ = l.srv.Close()
	}
	return err
}

// newConnGrace is how long, once SIGTERM has closed the listeners, a
// connection that has not yet sent a request may take to send one.
const newConnGrace = time.Second

// newConns tracks a server's connections that have not yet sent a request
// (http.StateNew: accepted, TLS handshake or request headers still to come).
type newConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// track is the server's ConnState hook.
func (n *newConns) track(c net.Conn, st http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st == http.StateNew {
		n.m[c] = struct{}{}
	} else {
		delete(n.m, c) // HTTP/2 reports active/idle once it has the preface
	}
}

// closeNew closes the connections that are still waiting for a request.
func (n *newConns) closeNew() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.m {
		_ = c.Close()
		delete(n.m, c)
	}
}

// servers builds the http, https and admin servers, in the order listen
// opened their sockets. Handlers read the current generation per request.
func (s *server) servers(cfg *config.Config) []httpServer {
	errLog := zap.NewStdLog(s.logger.Named("http").WithOptions(zap.IncreaseLevel(zap.WarnLevel)))
	lim := cfg.Limits
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: lim.ReadHeaderTimeout,
			// The whole request, body included (HTTP/2: per stream); a
			// trickled body is cut and answered 408 (proxy). Responses are
			// bounded per write by the proxy (limits.write_timeout).
			ReadTimeout:    lim.ReadTimeout,
			IdleTimeout:    lim.IdleTimeout,
			MaxHeaderBytes: lim.MaxHeaderBytes,
			ErrorLog:       errLog,
		}
	}
	httpSrv := newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gen.Load().http.ServeHTTP(w, r)
	}))
	httpsSrv := newServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gen.Load().proxy.ServeHTTP(w, r)
	}))
	httpsSrv.TLSConfig = s.tm.TLSConfig()
	configureHTTP2(httpsSrv) // SETTINGS_MAX_FRAME_SIZE 16 KiB (h2.go)
	adminSrv := newServer(admin.New(admin.Options{
		Gatherer: s.reg,
		Ready:    s.ready,
		Token:    func() string { return s.gen.Load().cfg.Admin.Token },
		Events:   s.events,
		API: map[string]func(*http.Request) (any, error){
			"certificates": s.apiCertificates,
			"export":       s.apiExport,
			"pools":        func(*http.Request) (any, error) { return s.gen.Load().proxy.Status(), nil },
			"renew":        s.apiRenew,
			"revoke":       s.apiRevoke,
			"drain":        s.apiDrain,
			"locks":        s.locks,
			"cluster":      s.apiCluster,

			// The REST form of drain and undrain: BACKEND is the backend's
			// URL, path-escaped, or its host:port when that is unique in
			// the pool.
			"pools/{pool}/backends/{backend}/drain":   func(r *http.Request) (any, error) { return s.apiPoolDrain(r, true) },
			"pools/{pool}/backends/{backend}/undrain": func(r *http.Request) (any, error) { return s.apiPoolDrain(r, false) },
		},
	}))
	lns := []httpServer{{name: "http", srv: httpSrv}, {name: "https", srv: httpsSrv, tls: true}, {name: "admin", srv: adminSrv}}
	if cfg.Listen.HTTP1 != config.HTTP1NetHTTP {
		lns[1].h1 = &h1.Server{Config: httpsSrv}
	}
	for i := range lns {
		lns[i].conns = &newConns{m: map[net.Conn]struct{}{}}
		lns[i].srv.ConnState = lns[i].conns.track
	}
	return lns
}

// serve runs the servers on sockets until ctx ends (SIGTERM) or one fails,
// reloading on SIGHUP and file changes, then drains in-flight requests.
func (s *server) serve(ctx context.Context, cfg *config.Config, sockets []net.Listener) error {
	log := s.logger
	lns := s.servers(cfg)
	errc := make(chan error, len(lns))
	for i, l := range lns {
		ln := sockets[i]
		log.Info("listening", zap.String("listener", l.name), zap.String("addr", ln.Addr().String()))
		go func() {
			err := l.serveOn(ln)
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s listener: %w", l.name, err)
				return
			}
			errc <- nil
		}()
	}
	// Listeners bound (since listen), certificates in storage loaded.
	if s.sd != nil { // only systemd waits for READY=1
		s.waitStoredLoaded(ctx, storedLoadWait)
	}
	s.sd.ready("serving (" + cfg.Summary() + ")")
	runErr := s.waitForStop(ctx, errc)
	s.sd.stopping()

	shutCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range lns {
		wg.Go(func() {
			// Shutdown waits for a connection that has not sent a request
			// (StateNew) for 5 s before it counts as idle; a peer's unused
			// pooled connection or a browser's preconnect would hold every
			// stop that long. Close those after newConnGrace instead.
			t := time.AfterFunc(newConnGrace, l.conns.closeNew)
			defer t.Stop()
			if err := l.shutdown(shutCtx); err != nil { // drain timeout: what is left is closed
				log.Warn("shutdown", zap.String("listener", l.name), zap.Error(err))
			}
		})
	}
	wg.Wait()
	if g := s.gen.Load(); g != nil {
		g.close()
	}
	log.Info("stopped")
	return runErr
}

// waitForStop reloads on SIGHUP and on a change of the config file until
// ctx ends or a server fails; it returns that failure.
func (s *server) waitForStop(ctx context.Context, errc <-chan error) error {
	hup := s.hup
	watch := newFileWatcher(s.path)
	ticker := time.NewTicker(2 * time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			s.logger.Info("stopping: draining in-flight requests", zap.Duration("timeout", drainTimeout))
			return nil
		case <-hup:
			s.reload(ctx, "SIGHUP", nil)
		case <-ticker.C:
			if data := watch.changed(); data != nil {
				s.reload(ctx, "file changed", data)
			}
		case err := <-errc:
			if err != nil {
				return err
			}
		}
	}
}

// buildHTTP makes the plain-HTTP handler of one generation: ACME
// challenges (this process, shared storage, preflight probes, peers) first,
// then the proxy's redirect-or-proxy handler.
func (s *server) buildHTTP(cfg *config.Config, storage challenge.Loader, ph *proxy.Handler) (http.Handler, *challenge.Peers) {
	solver := challenge.Solvers{s.tm, challenge.ProbeSolver{Store: storage}}
	opts := challenge.HTTPOptions{
		Solver:  solver,
		Metrics: s.cmetrics,
		Logger:  s.slog.With("component", "challenge"),
		Node:    s.node,
	}
	peers, _ := buildPeers(cfg.Cluster, opts.Logger) // checked in apply
	if peers != nil {
		names := managedNames(cfg)
		peers.Manages = func(host string) bool {
			for _, n := range names {
				if proxy.MatchHost(n, host) {
					return true
				}
			}
			// A name another edge may hold on demand: worth asking the
			// peers only when on_demand would allow it here too.
			return s.tm.OnDemandAllowed(context.Background(), host)
		}
		opts.Fallback = peers
	}
	h := challenge.NewHTTPHandler(opts, ph.HTTPHandler())
	if peers != nil {
		h = peers.PeerHandler(solver, h)
	}
	return h, peers
}

func (s *server) apiRenew(r *http.Request) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &admin.StatusError{Code: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	name := r.URL.Query().Get("name")
	if err := s.tm.Renew(context.WithoutCancel(r.Context()), name); err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, tlsmgr.ErrNotManaged):
			code = http.StatusNotFound
		case errors.Is(err, tlsmgr.ErrRenewing):
			code = http.StatusConflict
		}
		return nil, &admin.StatusError{Code: code, Err: err}
	}
	return map[string]string{"renewing": name}, nil
}

// apiRevoke is POST /api/revoke?name=N[&reason=keyCompromise]: the CA
// revokes the certificate of N, and a replacement is obtained and served.
func (s *server) apiRevoke(r *http.Request) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &admin.StatusError{Code: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	name := r.URL.Query().Get("name")
	reason, err := tlsmgr.RevocationReason(r.URL.Query().Get("reason"))
	if err != nil {
		return nil, &admin.StatusError{Code: http.StatusBadRequest, Err: err}
	}
	serial, err := s.tm.Revoke(context.WithoutCancel(r.Context()), name, reason)
	if err != nil {
		code := http.StatusBadGateway // the CA refused or was unreachable
		switch {
		case errors.Is(err, tlsmgr.ErrNotManaged), errors.Is(err, tlsmgr.ErrNoCertificate):
			code = http.StatusNotFound
		case errors.Is(err, tlsmgr.ErrRenewing):
			code = http.StatusConflict
		}
		return nil, &admin.StatusError{Code: code, Err: err}
	}
	return map[string]string{"revoked": name, "serial": serial, "replacing": name}, nil
}

// apiPoolDrain is POST /api/pools/{pool}/backends/{backend}/drain (drain
// true) and .../undrain: what apiDrain does, the backend named by its URL or
// by the host:port of exactly one backend of the pool.
func (s *server) apiPoolDrain(r *http.Request, drain bool) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &admin.StatusError{Code: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	h := s.gen.Load().proxy
	pool, backend := r.PathValue("pool"), r.PathValue("backend")
	backend = resolveBackend(h.Status(), pool, backend)
	if err := h.Drain(pool, backend, drain); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, proxy.ErrNoBackend) {
			code = http.StatusNotFound
		}
		return nil, &admin.StatusError{Code: code, Err: err}
	}
	return map[string]any{"pool": pool, "backend": backend, "drained": drain}, nil
}

// resolveBackend returns the URL of the backend of pool that name names:
// name itself when a backend has that URL, else the URL of the one backend
// whose host:port is name; name unchanged when none or several match.
func resolveBackend(pools []proxy.PoolStatus, pool, name string) string {
	for _, p := range pools {
		if p.Name != pool {
			continue
		}
		found := ""
		for _, b := range p.Backends {
			if b.URL == name {
				return name
			}
			if u, err := url.Parse(b.URL); err == nil && u.Host == name {
				if found != "" {
					return name // ambiguous: the caller's error names it
				}
				found = b.URL
			}
		}
		if found != "" {
			return found
		}
	}
	return name
}

// apiDrain is POST /api/drain?pool=P&backend=URL[&undo=1]: the backend
// takes no new requests (or, with undo, takes them again) while its
// requests in flight finish. The mark outlives reloads that keep the
// backend, not a restart.
func (s *server) apiDrain(r *http.Request) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &admin.StatusError{Code: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	q := r.URL.Query()
	pool, backend, drain := q.Get("pool"), q.Get("backend"), q.Get("undo") == ""
	if err := s.gen.Load().proxy.Drain(pool, backend, drain); err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, proxy.ErrNoBackend) {
			code = http.StatusNotFound
		}
		return nil, &admin.StatusError{Code: code, Err: err}
	}
	return map[string]any{"pool": pool, "backend": backend, "drained": drain}, nil
}

// certificate is one row of /api/certificates: tlsmgr's status and each
// export target's delivery state.
type certificate struct {
	tlsmgr.CertStatus
	Exports []export.Status `json:"exports,omitempty"`
}

func (s *server) apiCertificates(*http.Request) (any, error) {
	var out []certificate
	for _, c := range s.tm.Certificates() {
		out = append(out, certificate{CertStatus: c, Exports: s.disp.Statuses(c.Name)})
	}
	return out, nil
}

// apiExport is POST /api/export[?name=N&name=M][&dry_run=1]: deliver now,
// or test every target without changing a certificate.
func (s *server) apiExport(r *http.Request) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &admin.StatusError{Code: http.StatusMethodNotAllowed, Err: errors.New("use POST")}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	if r.URL.Query().Get("dry_run") != "" {
		return s.disp.Test(ctx), nil
	}
	return s.disp.Now(ctx, r.URL.Query()["name"]), nil
}

// certSource gives the dispatcher the stored certificates.
type certSource struct{ tm *tlsmgr.Manager }

func (c certSource) Certificate(ctx context.Context, name string) (*export.Cert, error) {
	tc, err := c.tm.StoredCertificate(ctx, name)
	if err != nil {
		return nil, err
	}
	key, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: the stored key is not a signer", name)
	}
	out := &export.Cert{Name: name, Key: key}
	for _, der := range tc.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%s: parsing the stored chain: %w", name, err)
		}
		out.Chain = append(out.Chain, x)
	}
	if len(out.Chain) == 0 {
		return nil, fmt.Errorf("%s: the stored certificate is empty", name)
	}
	return out, nil
}

// redisLogger adapts go-redis's Printf logging to zap, at warn level: it
// logs connection-pool failures (Redis unreachable), which /readyz also shows.
type redisLogger struct{ l *zap.Logger }

func (r redisLogger) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// fileWatcher notices a change of a file: a new size or modification time
// makes it read the file, and the bytes decide (reload compares them with
// those last applied, so a touch changes nothing).
type fileWatcher struct {
	path string
	last os.FileInfo
}

func newFileWatcher(path string) *fileWatcher {
	fi, _ := os.Stat(path)
	return &fileWatcher{path: path, last: fi}
}

// changed returns the file's contents when its size or modification time
// changed since the last call, else nil.
func (w *fileWatcher) changed() []byte {
	fi, err := os.Stat(w.path)
	if err != nil {
		return nil
	}
	if w.last != nil && fi.ModTime().Equal(w.last.ModTime()) && fi.Size() == w.last.Size() {
		return nil
	}
	data, err := os.ReadFile(w.path)
	if err != nil {
		return nil
	}
	w.last = fi
	return data
}
