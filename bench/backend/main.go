// Command backend is the benchmark's upstream: a minimal HTTP/1.1 server
// that answers every request with the same 1 KiB body and keeps connections
// alive. It skips net/http so that the backends cost as little CPU as
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

const bodySize = 1024

func main() {
	listen := flag.String("listen", "127.0.0.1:9001,127.0.0.1:9002", "comma-separated addresses, one per backend")
	flag.Parse()
	body := bytes.Repeat([]byte("x"), bodySize-1)
	body = append(body, '\n')
	for i, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatalf("backend: %v", err)
		}
		resp := []byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nX-Backend: %d\r\n\r\n%s", len(body), i+1, body))
		go serve(ln, resp)
	}
	fmt.Println("backend: listening on", *listen)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
}

func serve(ln net.Listener, resp []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("backend: %v", err)
		}
		go handle(c, resp)
	}
}

func handle(c net.Conn, resp []byte) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	for {
		keep, err := readRequest(r)
		if err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil || !keep {
			return
		}
	}
}

// readRequest reads one request head (and a Content-Length body) and
// reports whether the connection may stay open afterwards.
func readRequest(r *bufio.Reader) (keep bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	keep = bytes.Contains(line, []byte("HTTP/1.1"))
	var length int64
	for {
		h, err := r.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return false, fmt.Errorf("bad header line %q", h)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.ParseInt(string(v), 10, 64)
			if err != nil || length < 0 {
				return false, fmt.Errorf("bad Content-Length %q", v)
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
			return false, err
		}
	}
	return keep, nil
}
