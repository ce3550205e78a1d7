package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestAnswers: on one keep-alive connection, / gets the 1 KiB body and
// /64k (also with a query) the 64 KiB one, each parsed by net/http.
func TestAnswers(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go handle(server, answers{small: response(1, bodySize), big: response(1, bigBodySize)})
	br := bufio.NewReader(client)
	for _, c := range []struct {
		path string
		size int64
	}{{"/", 1024}, {"/64k", 65536}, {"/64k?x=1", 65536}, {"/other", 1024}} {
		go client.Write([]byte("GET " + c.path + " HTTP/1.1\r\nHost: bench.test\r\n\r\n"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || n != c.size || resp.ContentLength != c.size || resp.Close {
			t.Errorf("%s: status %d, %d bytes (Content-Length %d, close %v, err %v), want 200 and %d kept alive",
				c.path, resp.StatusCode, n, resp.ContentLength, resp.Close, err, c.size)
		}
	}
}
