package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000, "tb": 1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// parseSize parses a byte size: plain bytes ("1048576") or a number with
// a unit, decimal (KB, MB, GB, TB) or binary (KiB, MiB, GiB, TiB), in any
// case. "" is 0.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errors.New("expected a size like 10MB, 512KiB or 1048576")
	}
	unit, ok := sizeUnits[strings.ToLower(strings.TrimSpace(s[i:]))]
	if !ok {
		return 0, fmt.Errorf("unknown size unit %q (use B, KB, MB, GB, KiB, MiB or GiB)", strings.TrimSpace(s[i:]))
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, errors.New("size too large")
	}
	return n * unit, nil
}

// parseRate parses "N/UNIT" where UNIT is s, m, h or a duration ("10/m",
// "100/1h", "5/30s"). "" is 0 per 0 (no limit).
func parseRate(s string) (int, time.Duration, error) {
	if s == "" {
		return 0, 0, nil
	}
	num, per, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || err != nil || n <= 0 {
		return 0, 0, errors.New("expected a rate like 10/m")
	}
	per = strings.TrimSpace(per)
	var every time.Duration
	switch per {
	case "s":
		every = time.Second
	case "m":
		every = time.Minute
	case "h":
		every = time.Hour
	default:
		every, err = time.ParseDuration(per)
		if err != nil || every <= 0 {
			return 0, 0, errors.New("expected a rate like 10/m (per s, m, h or a duration)")
		}
	}
	return n, every, nil
}
