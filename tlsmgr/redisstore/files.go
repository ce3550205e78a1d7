package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// cleanKey normalises a key like a certmagic path: slash-separated, cleaned,
// no leading or trailing slash. The root is "".
func cleanKey(key string) string {
	return strings.TrimPrefix(path.Clean("/"+key), "/")
}

// childRange returns the ZRANGEBYLEX bounds that select every key strictly
// below key ("key/..."); for the root, every key. '0' is the byte after '/',
// so "(key0" excludes "key0..." yet includes any "key/<bytes>".
func childRange(key string) (lo, hi string) {
	if key == "" {
		return "-", "+"
	}
	return "[" + key + "/", "(" + key + "0"
}

func notExist(op, key string) error {
	return &fs.PathError{Op: op, Path: key, Err: fs.ErrNotExist}
}

// Store puts value at key, creating or overwriting it. The value, its
// modification time and the index entry change atomically.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	key = cleanKey(key)
	if key == "" {
		return s.metrics.op("store", fmt.Errorf("storing %q: %w", key, ErrInvalidKey))
	}
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	err := storeScript.Run(ctx, s.client, []string{s.valueKey(key), s.indexKey()}, value, now, key).Err()
	if err != nil {
		return s.metrics.op("store", fmt.Errorf("storing %q: %w", key, s.mapErr(err)))
	}
	return s.metrics.op("store", nil)
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist when key
// is not a file (missing, or a directory).
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	key = cleanKey(key)
	b, err := s.client.HGet(ctx, s.valueKey(key), "d").Bytes()
	switch {
	case errors.Is(err, redis.Nil) || key == "":
		return nil, s.metrics.op("load", notExist("load", key))
	case err != nil:
		return nil, s.metrics.op("load", fmt.Errorf("loading %q: %w", key, s.mapErr(err)))
	}
	s.metrics.op("load", nil)
	return b, nil
}

// Delete removes key and, if it is a directory, every key below it. A
// missing key is not an error (certmagic v0.25.6's contract; FileStorage
// uses os.RemoveAll). Deleting the root ("" or "/") is refused with
// ErrInvalidKey.
func (s *Storage) Delete(ctx context.Context, key string) error {
	key = cleanKey(key)
	if key == "" {
		return s.metrics.op("delete", fmt.Errorf("deleting the root: %w", ErrInvalidKey))
	}
	lo, hi := childRange(key)
	err := deleteScript.Run(ctx, s.client, []string{s.valueKey(key), s.indexKey()},
		key, lo, hi, s.prefix+"v:").Err()
	if err != nil {
		return s.metrics.op("delete", fmt.Errorf("deleting %q: %w", key, s.mapErr(err)))
	}
	return s.metrics.op("delete", nil)
}

// Exists reports whether key is a file or a directory (the prefix of some
// file). Errors talking to Redis report false.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	_, err := s.stat(ctx, "exists", key)
	return err == nil
}

// Stat describes key. Directories have IsTerminal false and no Modified or
// Size. Missing keys give an error wrapping fs.ErrNotExist.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	return s.stat(ctx, "stat", key)
}

func (s *Storage) stat(ctx context.Context, op, key string) (certmagic.KeyInfo, error) {
	info, err := s.statKey(ctx, op, cleanKey(key))
	return info, s.metrics.op(op, err)
}

// statKey stats an already cleaned key without recording metrics.
func (s *Storage) statKey(ctx context.Context, op, key string) (certmagic.KeyInfo, error) {
	lo, hi := childRange(key)
	res, err := statScript.Run(ctx, s.client, []string{s.valueKey(key), s.indexKey()}, lo, hi).Slice()
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("%s %q: %w", op, key, s.mapErr(err))
	}
	kind, _ := res[0].(int64)
	switch {
	case kind == 1 && key != "" && len(res) == 3:
		ms, _ := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
		size, _ := res[2].(int64)
		return certmagic.KeyInfo{Key: key, Modified: time.UnixMilli(ms), Size: size, IsTerminal: true}, nil
	case kind == 2:
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, notExist(op, key)
}

// List returns the keys below prefix, as full keys, sorted. Not recursive:
// the immediate children, files and directories. Recursive: every
// descendant, directories included, as FileStorage's walk does. A prefix
// with nothing below it gives fs.ErrNotExist, except when prefix is itself a
// file, which (like FileStorage) gives an empty list and no error.
func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	prefix = cleanKey(prefix)
	lo, hi := childRange(prefix)
	strip := 0
	if prefix != "" {
		strip = len(prefix) + 1
	}
	seen := make(map[string]bool)
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	const page = 1000
	for {
		members, err := s.client.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: lo, Max: hi, Count: page}).Result()
		if err != nil {
			return nil, s.metrics.op("list", fmt.Errorf("listing %q: %w", prefix, s.mapErr(err)))
		}
		for _, m := range members {
			rest := m[strip:]
			if !recursive {
				child, _, _ := strings.Cut(rest, "/")
				add(path.Join(prefix, child))
				continue
			}
			for i := 0; i < len(rest); i++ { // intermediate directories
				if rest[i] == '/' {
					add(path.Join(prefix, rest[:i]))
				}
			}
			add(m)
		}
		if len(members) < page {
			break
		}
		lo = "(" + members[len(members)-1]
	}
	if len(out) == 0 {
		if prefix != "" {
			info, err := s.statKey(ctx, "list", prefix)
			if err == nil && info.IsTerminal {
				s.metrics.op("list", nil)
				return []string{}, nil
			}
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, s.metrics.op("list", err)
			}
		}
		return nil, s.metrics.op("list", notExist("list", prefix))
	}
	sort.Strings(out)
	s.metrics.op("list", nil)
	return out, nil
}
