package redisstore

import (
	"testing"

	"github.com/farmedge/edge/internal/testenv"
)

// redisServer is a real redis-server started for one test (testenv's
// helper: AOF on, stopped by PID in Cleanup), with the short names these
// tests use.
type redisServer struct {
	*testenv.Redis
	addr string
}

func startRedis(t testing.TB, extra ...string) *redisServer {
	t.Helper()
	r := testenv.StartRedis(t, testenv.RedisOptions{Args: extra})
	return &redisServer{Redis: r, addr: r.Addr}
}

// freeze stops the server with SIGSTOP; thaw resumes it with SIGCONT.
func (r *redisServer) freeze() { r.Freeze() }
func (r *redisServer) thaw()   { r.Thaw() }

// restart shuts the server down (SIGTERM: Redis flushes the AOF) and starts
// it again on the same port and directory.
func (r *redisServer) restart() {
	r.Stop()
	r.Start()
}
