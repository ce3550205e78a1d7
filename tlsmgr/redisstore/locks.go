package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// LockInfo describes one held lock, as Locks reports it. It is plain data;
// its JSON form is {"name", "holder", "acquired", "age_seconds"}.
type LockInfo struct {
	Name     string        `json:"name"`
	Holder   string        `json:"holder"`      // the holder's Options.Instance
	Acquired time.Time     `json:"acquired"`    // by Redis's clock
	Age      time.Duration `json:"age_seconds"` // by Redis's clock; JSON in seconds
}

// MarshalJSON writes Age as (fractional) seconds.
func (l LockInfo) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name     string    `json:"name"`
		Holder   string    `json:"holder"`
		Acquired time.Time `json:"acquired"`
		Age      float64   `json:"age_seconds"`
	}{l.Name, l.Holder, l.Acquired, l.Age.Seconds()})
}

// Locks lists every lock currently held under this Storage's prefix, by any
// instance, sorted by name. Acquired and Age come from Redis's clock, so
// they are comparable across hosts. Index entries of expired locks are
// pruned as a side effect.
func (s *Storage) Locks(ctx context.Context) ([]LockInfo, error) {
	res, err := locksScript.Run(ctx, s.client, []string{s.lockIndexKey()}, s.prefix+"lock:").StringSlice()
	if err != nil {
		return nil, s.metrics.op("locks", fmt.Errorf("listing locks: %w", s.mapErr(err)))
	}
	if len(res) < 2 {
		return nil, s.metrics.op("locks", fmt.Errorf("listing locks: short reply"))
	}
	sec, _ := strconv.ParseInt(res[0], 10, 64)
	usec, _ := strconv.ParseInt(res[1], 10, 64)
	now := time.Unix(sec, usec*1000)
	out := []LockInfo{}
	for i := 2; i+1 < len(res); i += 2 {
		info := LockInfo{Name: res[i]}
		// value: "<token> <acquired unix ms> <instance>"
		parts := strings.SplitN(res[i+1], " ", 3)
		if len(parts) == 3 {
			if ms, err := strconv.ParseInt(parts[1], 10, 64); err == nil {
				info.Acquired = time.UnixMilli(ms)
				info.Age = max(now.Sub(info.Acquired), 0)
			}
			info.Holder = parts[2]
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	s.metrics.op("locks", nil)
	return out, nil
}
