// Command backend is the benchmark's upstream: a minimal HTTP/1.1 server
// that answers every request with the same 1 KiB body (64 KiB for a request
// whose path starts with /64k) and keeps connections alive. It skips net/http so that the backends cost as little CPU as
// possible on a machine shared with the proxies and the load generators.
//
//	go run ./bench/backend -listen 127.0.0.1:9001,127.0.0.1:9002
//
// One process serves every address given (each is one "backend"; the
// X-Backend header names which). Requests may carry a Content-Length body
// (it is read and dropped); a chunked request body closes the connection
// after the answer. HTTP/1.0 and "Connection: close" close after the answer.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

const (
	bodySize    = 1024
	bigBodySize = 64 << 10 // GET /64k
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated addresses, one per backend")
	flag.Parse()
	for i, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("backend: %v", err)
		}
		go serve(ln, answers{small: response(i+1, bodySize), big: response(i+1, bigBodySize)})
	}
	fmt.Println("backend: listening on", *listen)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}

// answers are the whole responses (head and body) one backend sends.
type answers struct{ small, big []byte }

func response(backend, size int) []byte {
	body := bytes.Repeat([]byte("x"), size-1)
	body = append(body, '\n')
	return []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nX-Backend: %d\r\n\r\n%s", len(body), backend, body))
}

func serve(ln net.Listener, resp answers) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("backend: %v", err)
		}
		go handle(c, resp)
	}
}

func handle(c net.Conn, resp answers) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	for {
		keep, big, err := readRequest(r)
		if err != nil {
			return
		}
		out := resp.small
		if big {
			out = resp.big
		}
		if _, err := c.Write(out); err != nil || !keep {
			return
		}
	}
}

// readRequest reads one request head (and a Content-Length body) and
// reports whether the connection may stay open afterwards and whether the
// 64 KiB answer was asked for (a path starting with /64k).
func readRequest(r *bufio.Reader) (keep, big bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return false, false, err
	}
	keep = bytes.Contains(line, []byte("HTTP/1.1"))
	if _, target, ok := bytes.Cut(line, []byte(" ")); ok {
		big = bytes.HasPrefix(target, []byte("/64k"))
	}
	var length int64
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			return false, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return false, false, fmt.Errorf("bad header line %q", h)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.ParseInt(string(v), 10, 64)
			if err != nil || length < 0 {
				return false, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			keep = false // the body is not read: answer, then close
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keep = false
			}
		}
	}
	if length > 0 {
		if _, err := io.CopyN(io.Discard, r, length); err != nil {
			return false, false, err
		}
	}
	return keep, big, nil
}
