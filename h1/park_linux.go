package h1

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// parking holds the connections that have been idle past idleSwap without
// a goroutine each: their sockets wait in an epoll instance of the
// server's own, which itself waits in Go's network poller, and the first
// byte (or the close, or IdleTimeout) starts a goroutine that goes on
// serving. An idle goroutine's stack is 4 KiB at least (a read through
// crypto/tls needs more than the 2 KiB minimum), a parked connection's
// entry and timer about 200 bytes.
type parking struct {
	epfd int
	file *os.File        // epfd, in Go's poller
	rc   syscall.RawConn // file's

	mu     sync.Mutex
	closed bool
	seq    uint64
	conns  map[uint64]*parked // by token, the epoll event's data
}

// parked is one connection in parking.
type parked struct {
	c        *conn
	ctx      context.Context
	deadline time.Time
	fd       int
	timer    *time.Timer
}

// newParking opens the epoll instance and starts its wait.
func newParking() (*parking, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	f := os.NewFile(uintptr(epfd), "h1-parking")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	p := &parking{epfd: epfd, file: f, rc: rc, conns: map[uint64]*parked{}}
	go p.wait()
	return p, nil
}

// park hands c's wait for its next request to p, and reports whether p
// took it (false: the caller waits as before). ctx and deadline are what
// the wait would have had.
func (p *parking) park(c *conn, ctx context.Context, deadline time.Time) bool {
	rc := rawConn(c.rwc)
	if rc == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.seq++
	tok := p.seq
	pk := &parked{c: c, ctx: ctx, deadline: deadline, fd: -1}
	var added error
	err := rc.Control(func(fd uintptr) {
		// Level-triggered and one-shot: a byte that came before the
		// registration is reported at once, and only once.
		ev := syscall.EpollEvent{
			Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
			Fd:     int32(tok),
			Pad:    int32(tok >> 32),
		}
		if added = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); added == nil {
			pk.fd = int(fd)
		}
	})
	if err != nil || added != nil {
		return false
	}
	p.conns[tok] = pk
	c.parkTok = tok
	if !deadline.IsZero() {
		pk.timer = time.AfterFunc(time.Until(deadline), func() {
			if pk := p.take(tok); pk != nil {
				pk.resume()
			}
		})
	}
	return true
}

// take removes the connection of token tok from p and returns it, or nil
// when it is no longer there (woken by another path).
func (p *parking) take(tok uint64) *parked {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.takeLocked(tok)
}

func (p *parking) takeLocked(tok uint64) *parked {
	pk := p.conns[tok]
	if pk == nil {
		return nil
	}
	delete(p.conns, tok)
	pk.c.parkTok = 0
	if pk.timer != nil {
		pk.timer.Stop()
	}
	// The socket is open: only take's callers close a parked connection,
	// after taking it. Once p is closed its descriptor may be another
	// file's.
	if !p.closed {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, pk.fd, nil)
	}
	return pk
}

// unpark takes c out of p if it is there, for a caller about to close it.
func (p *parking) unpark(c *conn) *parked {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.parkTok == 0 {
		return nil
	}
	return p.takeLocked(c.parkTok)
}

// resume goes on with the connection's wait, on the calling goroutine:
// the read finds the byte, the close or the deadline at once.
func (pk *parked) resume() {
	pk.c.run(pk.ctx, false, true, pk.deadline)
}

// wait resumes each connection whose socket becomes readable (or closes),
// until p is closed.
func (p *parking) wait() {
	evs := make([]syscall.EpollEvent, 64)
	var ready []*parked
	for {
		n := 0
		var werr error
		err := p.rc.Read(func(fd uintptr) bool {
			for {
				n, werr = syscall.EpollWait(p.epfd, evs, 0)
				if werr != syscall.EINTR {
					break
				}
			}
			return werr != nil || n > 0
		})
		if err != nil {
			return // closed
		}
		if werr != nil {
			p.fail()
			return
		}
		p.mu.Lock()
		for _, ev := range evs[:n] {
			if pk := p.takeLocked(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32); pk != nil {
				ready = append(ready, pk)
			}
		}
		p.mu.Unlock()
		for i, pk := range ready {
			go pk.resume()
			ready[i] = nil
		}
		ready = ready[:0]
	}
}

// fail gives up parking after epoll_wait failed (it never should): no
// connection is parked from then on, and those parked go on waiting on
// goroutines of their own.
func (p *parking) fail() {
	p.mu.Lock()
	p.closed = true
	var all []*parked
	for tok := range p.conns {
		all = append(all, p.takeLocked(tok))
	}
	p.mu.Unlock()
	for _, pk := range all {
		go pk.resume()
	}
}

// close stops p's wait; connections still parked are the caller's to
// unpark (closeIdle, Close) or their timers'.
func (p *parking) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.file.Close()
}

// len is how many connections are parked.
func (p *parking) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// rawConner is a connection wrapper that can hand out its socket when
// reading from it directly skips nothing of its own (listener.Conn).
// It is not syscall.Conn on purpose: the standard library would then
// splice from the socket past the wrapper.
type rawConner interface {
	RawConn() (syscall.RawConn, error)
}

// rawConn is the socket under nc (a TCP connection, under TLS or not,
// or a rawConner), or nil.
func rawConn(nc net.Conn) syscall.RawConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	var rc syscall.RawConn
	var err error
	switch c := nc.(type) {
	case rawConner:
		rc, err = c.RawConn()
	case *net.TCPConn:
		rc, err = c.SyscallConn()
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	return rc
}
