//go:build !linux

package h1

import (
	"context"
	"errors"
	"time"
)

// parking needs epoll: elsewhere every idle connection keeps a goroutine
// waiting in a read, and newParking says so.
type parking struct{}

type parked struct{}

func newParking() (*parking, error) {
	return nil, errors.New("parking idle connections needs epoll (Linux)")
}

func (p *parking) park(c *conn, ctx context.Context, deadline time.Time) bool { return false }
func (p *parking) unpark(c *conn) *parked                                     { return nil }
func (p *parking) close()                                                     {}
func (p *parking) len() int                                                   { return 0 }
func (pk *parked) resume()                                                    {}
