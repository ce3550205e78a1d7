// Package redisstore is a certmagic.Storage over Redis (a single server,
// Sentinel or Cluster, through go-redis's UniversalClient), with a
// distributed lock whose lease is kept alive while held.
//
// Layout, for prefix P (every key carries the hash tag {P}, so all of one
// edge cluster's keys live in one Redis Cluster slot and Lua scripts may
// touch any of them):
//
//	{P}:v:<key>     hash {d: value, m: modified unix ms}, one per file
//	{P}:idx         sorted set (score 0) of every file key, for List and
//	                directory queries by lexicographic range
//	{P}:lock:<name> string "<token> <acquired unix ms> <instance>", with a
//	                PX lease
//	{P}:locks       set of lock names, for Locks (pruned lazily)
//
// Values and the index change together in one Lua script, so a reader never
// sees a file that List does not show or the reverse.
//
// The lock is a lease (SET NX PX with a random token), not a fencing token:
// a holder that stalls past its lease, or loses Redis for that long, may
// overlap with the next holder until its keepalive reports the loss (at the
// latest when the lease it last confirmed runs out). Redis replication is
// asynchronous, so a Sentinel or Cluster failover can lose a lock that the
// old master had just granted. certmagic tolerates both: it re-checks
// storage after taking a lock. A lease lengthened by RenewLockLease also
// lengthens how long a crashed holder blocks others.
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults used when the corresponding Options field is zero.
const (
	DefaultPrefix    = "edge"
	DefaultLockLease = 10 * time.Second
	DefaultLockPoll  = 1 * time.Second
)

// Options configures a Storage. The zero value connects to nothing: Addrs is
// required. Options is read once by New and never modified.
type Options struct {
	// Addrs lists Redis addresses (host:port). One address without
	// MasterName: a single server. Several without MasterName: a Redis
	// Cluster seed list. With MasterName: Sentinel addresses.
	Addrs []string
	// MasterName selects Sentinel mode when set: Addrs are the sentinels,
	// asked for the master of that name, and the client follows a
	// failover to the new master.
	MasterName string
	// Username and Password authenticate to Redis (ACL or requirepass);
	// empty means no AUTH. With MasterName they go to the master, not to
	// the sentinels.
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (their own ACL or requirepass); empty means no AUTH there. Only with
	// MasterName.
	SentinelUsername, SentinelPassword string
	// TLS enables TLS to Redis (with MasterName, to the sentinels too);
	// nil means plain TCP. go-redis fills ServerName from each address
	// when it is empty.
	TLS *tls.Config
	// DB selects a database on a single server or Sentinel master; it must
	// be 0 for Cluster.
	DB int
	// Prefix namespaces every key as "{Prefix}:..."; empty means
	// DefaultPrefix. Instances share certificates and locks only when they
	// use the same Prefix.
	Prefix string
	// LockLease is how long a lock outlives a holder that stopped renewing
	// it (crashed, partitioned); the keepalive renews it every LockLease/3.
	// Zero means DefaultLockLease.
	LockLease time.Duration
	// LockPoll is how often a blocked Lock retries (jittered ±25%). Zero
	// means DefaultLockPoll.
	LockPoll time.Duration
	// Instance names this holder in Locks; empty means "hostname:pid".
	Instance string
	// Metrics receives storage metrics; nil records none.
	Metrics *Metrics
	// Logger receives the storage's logs (named "redisstore"); nil
	// discards them.
	Logger *zap.Logger
	// OnLockLost, if set, is called with the lock name when this Storage
	// learns that a lock it holds was lost: its token is gone or replaced,
	// or the lease ran out before a renewal could be confirmed (Redis
	// frozen or unreachable; another holder may then take it). It runs on
	// its own goroutine, which Close waits for, so it must return; it may
	// call Unlock. nil: losses are only logged and counted.
	OnLockLost func(name string)
}

// Storage is a certmagic.Storage, TryLocker and LockLeaseRenewer backed by
// Redis. Create it with New; it is safe for concurrent use. Close releases
// its resources.
type Storage struct {
	client   redis.UniversalClient
	addrs    string
	prefix   string // "{P}:"
	lease    time.Duration
	poll     time.Duration
	instance string
	metrics  *Metrics
	log      *zap.Logger
	onLost   func(string)

	ctx    context.Context // cancelled by Close; parent of keepalives
	cancel context.CancelFunc
	wg     sync.WaitGroup // keepalive goroutines

	mu      sync.Mutex
	closed  bool
	claimed map[string]bool      // names claimed by a local Lock/TryLock caller
	held    map[string]*heldLock // names whose Redis lock we hold
	wake    chan struct{}        // closed and replaced when a claim is released
}

// Interface guards.
var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

// New validates opts and creates a Storage. It does not contact Redis; call
// Ping to check connectivity.
func New(opts Options) (*Storage, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redisstore: no address given")
	}
	if opts.MasterName == "" && (opts.SentinelUsername != "" || opts.SentinelPassword != "") {
		return nil, errors.New("redisstore: sentinel credentials without a master name")
	}
	if opts.MasterName == "" && len(opts.Addrs) > 1 && opts.DB != 0 {
		return nil, fmt.Errorf("redisstore: db %d: Redis Cluster has only db 0", opts.DB)
	}
	if opts.LockLease < 0 || opts.LockPoll < 0 {
		return nil, errors.New("redisstore: negative lock lease or poll interval")
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redisstore: prefix %q: braces are not allowed (the prefix becomes the hash tag)", prefix)
	}
	lease := opts.LockLease
	if lease == 0 {
		lease = DefaultLockLease
	}
	if lease < 30*time.Millisecond {
		return nil, fmt.Errorf("redisstore: lock lease %s is too short", lease)
	}
	poll := opts.LockPoll
	if poll == 0 {
		poll = DefaultLockPoll
	}
	instance := opts.Instance
	if instance == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown"
		}
		instance = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}

	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:      opts.Addrs,
		MasterName: opts.MasterName,
		Username:   opts.Username,
		Password:   opts.Password,
		// Sentinel's own AUTH; go-redis ignores these without MasterName.
		SentinelUsername: opts.SentinelUsername,
		SentinelPassword: opts.SentinelPassword,
		TLSConfig:        opts.TLS,
		DB:               opts.DB,
		ClientName:       "edge-redisstore",
		// Let callers' context deadlines bound socket I/O, so Lock and
		// the keepalive honour their contexts even against a frozen server.
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	})

	ctx, cancel := context.WithCancel(context.Background())
	return &Storage{
		client:   client,
		addrs:    describeAddrs(opts),
		prefix:   "{" + prefix + "}:",
		lease:    lease,
		poll:     poll,
		instance: instance,
		metrics:  opts.Metrics,
		log:      log.Named("redisstore"),
		onLost:   opts.OnLockLost,
		ctx:      ctx,
		cancel:   cancel,
		claimed:  make(map[string]bool),
		held:     make(map[string]*heldLock),
		wake:     make(chan struct{}),
	}, nil
}

// Close stops every keepalive and waits for it, releases the locks this
// Storage still holds (best effort, compare-and-delete; a lock it cannot
// release expires within its lease), and closes the Redis client. Methods
// called after Close return ErrClosed. Close is idempotent.
func (s *Storage) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	held := s.held
	s.held = make(map[string]*heldLock)
	close(s.wake) // wake local waiters; they see closed
	s.wake = make(chan struct{})
	s.mu.Unlock()

	s.cancel()
	s.wg.Wait()

	for name, h := range held {
		s.metrics.released(name)
		if h.lost.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := unlockScript.Run(ctx, s.client, []string{h.key, s.lockIndexKey()}, h.token, name).Int()
		cancel()
		if err != nil {
			s.log.Warn("releasing lock on close", zap.String("lock", name), zap.Error(err))
		}
	}
	return s.client.Close()
}

// Ping checks that Redis answers.
func (s *Storage) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("pinging redis %s: %w", s.addrs, s.mapErr(err))
	}
	return nil
}

// describeAddrs names where the store connects, for messages: the
// addresses, or the master's name and the sentinels.
func describeAddrs(opts Options) string {
	if opts.MasterName != "" {
		return fmt.Sprintf("master %q via sentinels %s", opts.MasterName, strings.Join(opts.Addrs, ","))
	}
	return strings.Join(opts.Addrs, ",")
}

// String describes the storage for certmagic's logs; it never includes
// credentials.
func (s *Storage) String() string {
	return "RedisStorage:" + strings.TrimSuffix(s.prefix, ":") + "@" + s.addrs
}

// mapErr turns go-redis's closed-client error into ErrClosed.
func (s *Storage) mapErr(err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return ErrClosed
	}
	return err
}

func (s *Storage) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Storage) valueKey(key string) string { return s.prefix + "v:" + key }
func (s *Storage) indexKey() string           { return s.prefix + "idx" }
func (s *Storage) lockKey(name string) string { return s.prefix + "lock:" + name }
func (s *Storage) lockIndexKey() string       { return s.prefix + "locks" }
