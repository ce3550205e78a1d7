package proxy

import "syscall"

// alive reports whether an idle connection still looks usable: the
// backend has neither closed it nor sent anything unasked. It peeks
// without blocking (one recv(MSG_PEEK|MSG_DONTWAIT) system call), so it is
// asked only before a request that may not be sent twice.
func (pc *h1Conn) alive() bool {
	sc, ok := pc.Conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
