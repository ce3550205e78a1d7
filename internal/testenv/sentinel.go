package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SentinelOptions configures StartSentinel; zero fields take the defaults
// named.
type SentinelOptions struct {
	// Master is the monitored name (default "mymaster").
	Master string
	// Replicas is how many replicas the master starts with (default 1).
	Replicas int
	// Sentinels is how many sentinels watch it (default 3), Quorum how
	// many must agree that it is down (default 2).
	Sentinels, Quorum int
	// DownAfter is the sentinels' down-after-milliseconds (default 1s);
	// FailoverTimeout their failover-timeout (default 5s).
	DownAfter, FailoverTimeout time.Duration
	// Args are extra redis-server arguments for the master and replicas
	// (a requirepass, a user).
	Args []string
	// MasterAuth, if set, is the master's and replicas' requirepass, which
	// the replicas and the sentinels give them (masterauth, sentinel
	// auth-pass).
	MasterAuth string
	// SentinelPassword, if set, is the sentinels' own requirepass (and
	// sentinel-pass, which they give each other).
	SentinelPassword string
}

// Sentinel is a Redis master, its replicas and the sentinels that watch
// them, all on 127.0.0.1 (the sentinels announce 127.0.0.1). Each process
// is stopped in Cleanup.
type Sentinel struct {
	// Master is the monitored name.
	Master string
	// Servers are the Redis servers: Servers[0] started as the master,
	// the others as its replicas. MasterAddr says which is master now.
	Servers []*Redis
	// Addrs are the sentinels' addresses.
	Addrs []string
	// Procs are the sentinel processes.
	Procs []*Process

	masterAuth, sentinelAuth string
}

// StartSentinel starts a master, its replicas and the sentinels, and
// returns when every replica is in sync and every sentinel knows the
// master, the replicas and the other sentinels: a failover can then
// happen.
func StartSentinel(tb TB, opts SentinelOptions) *Sentinel {
	tb.Helper()
	if opts.Master == "" {
		opts.Master = "mymaster"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Sentinels == 0 {
		opts.Sentinels = 3
	}
	if opts.Quorum == 0 {
		opts.Quorum = 2
	}
	if opts.DownAfter == 0 {
		opts.DownAfter = time.Second
	}
	if opts.FailoverTimeout == 0 {
		opts.FailoverTimeout = 5 * time.Second
	}
	bin := RequireTool(tb, "redis-server")
	// No 5 s wait before a replica's first full sync.
	serverArgs := append([]string{"--repl-diskless-sync-delay", "0"}, opts.Args...)
	if opts.MasterAuth != "" {
		serverArgs = append([]string{"--masterauth", opts.MasterAuth, "--requirepass", opts.MasterAuth}, serverArgs...)
	}
	s := &Sentinel{Master: opts.Master, masterAuth: opts.MasterAuth, sentinelAuth: opts.SentinelPassword}
	master := StartRedis(tb, RedisOptions{Name: "redis-master", Args: serverArgs})
	s.Servers = append(s.Servers, master)
	for i := range opts.Replicas {
		s.Servers = append(s.Servers, StartRedis(tb, RedisOptions{Name: fmt.Sprintf("redis-replica-%d", i+1), Args: serverArgs, ReplicaOf: master.Addr}))
	}
	if err := s.WaitReplicated(20 * time.Second); err != nil {
		tb.Fatalf("replicas of %s: %v", master.Addr, err)
	}

	ports := FreePorts(tb, opts.Sentinels)
	for i, port := range ports {
		dir := tb.TempDir()
		conf := []string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"dir " + dir,
			"sentinel announce-ip 127.0.0.1",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", opts.Master, master.Port, opts.Quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", opts.Master, opts.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", opts.Master, opts.FailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", opts.Master),
		}
		if opts.MasterAuth != "" {
			conf = append(conf, fmt.Sprintf("sentinel auth-pass %s %s", opts.Master, opts.MasterAuth))
		}
		if opts.SentinelPassword != "" {
			conf = append(conf, "requirepass "+opts.SentinelPassword, "sentinel sentinel-pass "+opts.SentinelPassword)
		}
		// The sentinel rewrites its config file (what it learns), so it
		// lives in a directory of its own.
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
			tb.Fatalf("writing %s: %v", path, err)
		}
		p := Start(tb, Cmd{Name: fmt.Sprintf("sentinel-%d", i+1), Path: bin, Args: []string{path, "--sentinel"}, Dir: dir})
		s.Addrs = append(s.Addrs, Addr(port))
		s.Procs = append(s.Procs, p)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, addr := range s.Addrs {
		for {
			m, err := s.sentinelMaster(addr)
			if err == nil && m["num-slaves"] == strconv.Itoa(opts.Replicas) && m["num-other-sentinels"] == strconv.Itoa(opts.Sentinels-1) &&
				!strings.Contains(m["flags"], "down") {
				break
			}
			if s.Procs[i].Exited() || time.Now().After(deadline) {
				tb.Fatalf("sentinel %s does not see %s with %d replicas and %d other sentinels: %v %v\n%s",
					addr, opts.Master, opts.Replicas, opts.Sentinels-1, m, err, s.Procs[i].Tail(20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s
}

// sentinelMaster is SENTINEL MASTER's field list as a map.
func (s *Sentinel) sentinelMaster(addr string) (map[string]string, error) {
	v, err := RedisDoAuth(addr, s.sentinelAuth, "SENTINEL", "MASTER", s.Master)
	if err != nil {
		return nil, err
	}
	l, _ := v.([]any)
	m := map[string]string{}
	for i := 0; i+1 < len(l); i += 2 {
		k, _ := l[i].(string)
		m[k] = fmt.Sprint(l[i+1])
	}
	return m, nil
}

// MasterAddr asks the first sentinel that answers for the master's
// address.
func (s *Sentinel) MasterAddr() (string, error) {
	var last error
	for _, addr := range s.Addrs {
		v, err := RedisDoAuth(addr, s.sentinelAuth, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Master)
		if err != nil {
			last = err
			continue
		}
		if l, ok := v.([]any); ok && len(l) == 2 {
			return net.JoinHostPort(fmt.Sprint(l[0]), fmt.Sprint(l[1])), nil
		}
		last = fmt.Errorf("sentinel %s: unexpected reply %v", addr, v)
	}
	return "", last
}

// Server returns the server listening on addr, or nil.
func (s *Sentinel) Server(addr string) *Redis {
	for _, r := range s.Servers {
		if r.Addr == addr {
			return r
		}
	}
	return nil
}

// Role is the "role" of INFO replication on the server at addr (master,
// slave).
func (s *Sentinel) Role(addr string) (string, error) {
	v, err := RedisDoAuth(addr, s.masterAuth, "INFO", "replication")
	if err != nil {
		return "", err
	}
	return redisInfo(v)["role"], nil
}

// Failover asks a sentinel for a failover (SENTINEL FAILOVER): a replica
// is promoted and the master demoted, without waiting for it to fail.
func (s *Sentinel) Failover() error {
	_, err := RedisDoAuth(s.Addrs[0], s.sentinelAuth, "SENTINEL", "FAILOVER", s.Master)
	return err
}

// WaitNewMaster waits until every sentinel names a master other than old,
// and that server reports role master; it returns the new address.
func (s *Sentinel) WaitNewMaster(old string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		addr, agreed := "", true
		for _, sa := range s.Addrs {
			v, err := RedisDoAuth(sa, s.sentinelAuth, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Master)
			l, ok := v.([]any)
			if err != nil || !ok || len(l) != 2 {
				agreed = false
				break
			}
			a := net.JoinHostPort(fmt.Sprint(l[0]), fmt.Sprint(l[1]))
			if a == old || (addr != "" && a != addr) {
				agreed = false
				break
			}
			addr = a
		}
		if agreed {
			if role, err := s.Role(addr); err == nil && role == "master" {
				return addr, nil
			}
		}
		if time.Now().After(deadline) {
			m, _ := s.MasterAddr()
			return "", fmt.Errorf("no new master for %s (was %s) within %s: sentinels say %q", s.Master, old, timeout, m)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitReplicated waits until the current master has every replica online
// at its own replication offset: what was written before the call is on
// every replica.
func (s *Sentinel) WaitReplicated(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	master := s.Servers[0].Addr
	if len(s.Addrs) > 0 {
		var err error
		if master, err = s.MasterAddr(); err != nil {
			return err
		}
	}
	for {
		info, err := RedisDoAuth(master, s.masterAuth, "INFO", "replication")
		var last string
		if err == nil {
			m := redisInfo(info)
			last = fmt.Sprint(m)
			if replicasAt(m, m["master_repl_offset"]) == s.alive()-1 {
				return nil
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replicas of %s not in sync within %s: %s", master, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive counts the servers whose process runs.
func (s *Sentinel) alive() int {
	n := 0
	for _, r := range s.Servers {
		if p := r.Process(); p != nil && !p.Exited() {
			n++
		}
	}
	return n
}

// replicasAt counts the replicas of an INFO replication map that are
// online at offset ("slaveN:ip=...,port=...,state=online,offset=N,lag=0").
func replicasAt(info map[string]string, offset string) int {
	n := 0
	for k, v := range info {
		if !strings.HasPrefix(k, "slave") || k == "slave_read_repl_offset" || k == "slave_repl_offset" {
			continue
		}
		if strings.Contains(v, "state=online") && strings.Contains(v+",", "offset="+offset+",") {
			n++
		}
	}
	return n
}
