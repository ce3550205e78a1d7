package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// newTestStorage opens a Storage on srv; Close runs in t.Cleanup (before the
// server stops, as cleanups run last-in first-out).
func newTestStorage(t *testing.T, srv *redisServer, opts Options) *Storage {
	t.Helper()
	opts.Addrs = []string{srv.addr}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// fixture is the tree every conformance case starts from. "ab/x" checks
// that prefixes match whole components ("a" is not a prefix of "ab").
var fixture = map[string]string{
	"a/b/c.txt": "c",
	"a/b/d.txt": "dd",
	"a/e.txt":   "eee",
	"f.txt":     "f",
	"ab/x":      "x",
}

func seed(t *testing.T, s *Storage) {
	t.Helper()
	for k, v := range fixture {
		if err := s.Store(t.Context(), k, []byte(v)); err != nil {
			t.Fatalf("store %s: %v", k, err)
		}
	}
}

func TestStorageConformance(t *testing.T) {
	srv := startRedis(t)
	seq := 0
	fresh := func(t *testing.T) *Storage {
		seq++
		s := newTestStorage(t, srv, Options{Prefix: fmt.Sprintf("conf%d", seq)})
		seed(t, s)
		return s
	}

	t.Run("Load", func(t *testing.T) {
		s := fresh(t)
		for _, tc := range []struct {
			name, key, want string
			missing         bool
		}{
			{"file", "a/e.txt", "eee", false},
			{"nested file", "a/b/d.txt", "dd", false},
			{"leading slash normalised", "/a/e.txt", "eee", false},
			{"dot segments normalised", "a/b/../e.txt", "eee", false},
			{"missing", "nope", "", true},
			{"directory is not a file", "a", "", true},
			{"root", "", "", true},
			{"component prefix", "a/e", "", true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := s.Load(t.Context(), tc.key)
				if tc.missing {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Fatalf("Load(%q) = %q, %v; want fs.ErrNotExist", tc.key, got, err)
					}
					return
				}
				if err != nil || string(got) != tc.want {
					t.Fatalf("Load(%q) = %q, %v; want %q", tc.key, got, err, tc.want)
				}
			})
		}
	})

	t.Run("ExistsAndStat", func(t *testing.T) {
		s := fresh(t)
		for _, tc := range []struct {
			key      string
			exists   bool
			terminal bool
			size     int64
		}{
			{"a/b/c.txt", true, true, 1},
			{"a/e.txt", true, true, 3},
			{"a", true, false, 0},
			{"a/b", true, false, 0},
			{"a/b/", true, false, 0},
			{"/a/b", true, false, 0},
			{"ab", true, false, 0},
			{"", true, false, 0},
			{"a/b/c", false, false, 0},
			{"a/", true, false, 0},
			{"zzz", false, false, 0},
			{"a/b/c.txt/deeper", false, false, 0},
		} {
			t.Run(fmt.Sprintf("%q", tc.key), func(t *testing.T) {
				if got := s.Exists(t.Context(), tc.key); got != tc.exists {
					t.Errorf("Exists(%q) = %v, want %v", tc.key, got, tc.exists)
				}
				info, err := s.Stat(t.Context(), tc.key)
				if !tc.exists {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("Stat(%q) = %+v, %v; want fs.ErrNotExist", tc.key, info, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Stat(%q): %v", tc.key, err)
				}
				if info.IsTerminal != tc.terminal || info.Size != tc.size || info.Key != cleanKey(tc.key) {
					t.Errorf("Stat(%q) = %+v, want terminal=%v size=%d", tc.key, info, tc.terminal, tc.size)
				}
				if tc.terminal && time.Since(info.Modified) > time.Minute {
					t.Errorf("Stat(%q).Modified = %v, want about now", tc.key, info.Modified)
				}
			})
		}
	})

	t.Run("List", func(t *testing.T) {
		s := fresh(t)
		for _, tc := range []struct {
			prefix    string
			recursive bool
			want      []string
			missing   bool
		}{
			{"a", false, []string{"a/b", "a/e.txt"}, false},
			{"a", true, []string{"a/b", "a/b/c.txt", "a/b/d.txt", "a/e.txt"}, false},
			{"/a/", false, []string{"a/b", "a/e.txt"}, false},
			{"a/b", false, []string{"a/b/c.txt", "a/b/d.txt"}, false},
			{"", false, []string{"a", "ab", "f.txt"}, false},
			{"", true, []string{"a", "a/b", "a/b/c.txt", "a/b/d.txt", "a/e.txt", "ab", "ab/x", "f.txt"}, false},
			{"f.txt", false, []string{}, false}, // a file: empty, like FileStorage
			{"nope", false, nil, true},
			{"nope", true, nil, true},
			{"a/b/c", false, nil, true},
		} {
			t.Run(fmt.Sprintf("%q recursive=%v", tc.prefix, tc.recursive), func(t *testing.T) {
				got, err := s.List(t.Context(), tc.prefix, tc.recursive)
				if tc.missing {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Fatalf("List = %q, %v; want fs.ErrNotExist", got, err)
					}
					return
				}
				if err != nil || !slices.Equal(got, tc.want) {
					t.Fatalf("List = %q, %v; want %q", got, err, tc.want)
				}
			})
		}
	})

	t.Run("Delete", func(t *testing.T) {
		for _, tc := range []struct {
			name, key string
			remain    []string // files left, sorted
		}{
			{"file", "a/e.txt", []string{"a/b/c.txt", "a/b/d.txt", "ab/x", "f.txt"}},
			{"subdirectory", "a/b", []string{"a/e.txt", "ab/x", "f.txt"}},
			{"directory, not its sibling ab", "a", []string{"ab/x", "f.txt"}},
			{"trailing slash", "a/b/", []string{"a/e.txt", "ab/x", "f.txt"}},
			{"missing key is not an error", "nope", []string{"a/b/c.txt", "a/b/d.txt", "a/e.txt", "ab/x", "f.txt"}},
			{"component prefix deletes nothing", "a/e", []string{"a/b/c.txt", "a/b/d.txt", "a/e.txt", "ab/x", "f.txt"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := fresh(t)
				if err := s.Delete(t.Context(), tc.key); err != nil {
					t.Fatalf("Delete(%q): %v", tc.key, err)
				}
				if s.Exists(t.Context(), tc.key) && cleanKey(tc.key) != "a/e" {
					t.Errorf("Exists(%q) after Delete = true", tc.key)
				}
				var files []string
				for k := range fixture {
					if _, err := s.Load(t.Context(), k); err == nil {
						files = append(files, k)
					} else if !errors.Is(err, fs.ErrNotExist) {
						t.Fatal(err)
					}
				}
				slices.Sort(files)
				if !slices.Equal(files, tc.remain) {
					t.Errorf("files after Delete(%q) = %q, want %q", tc.key, files, tc.remain)
				}
				all, _ := s.List(t.Context(), "", true)
				for _, k := range all {
					if k == cleanKey(tc.key) || len(k) > len(cleanKey(tc.key)) && k[:len(cleanKey(tc.key))+1] == cleanKey(tc.key)+"/" {
						t.Errorf("List still shows %q after Delete(%q)", k, tc.key)
					}
				}
			})
		}
		t.Run("root is refused", func(t *testing.T) {
			s := fresh(t)
			if err := s.Delete(t.Context(), "/"); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Delete(/) = %v, want ErrInvalidKey", err)
			}
		})
		t.Run("last file removes its directories", func(t *testing.T) {
			s := fresh(t)
			for _, k := range []string{"a/b/c.txt", "a/b/d.txt"} {
				if err := s.Delete(t.Context(), k); err != nil {
					t.Fatal(err)
				}
			}
			if s.Exists(t.Context(), "a/b") {
				t.Error("a/b still exists after its files were deleted")
			}
			if got, err := s.List(t.Context(), "a", false); err != nil || !slices.Equal(got, []string{"a/e.txt"}) {
				t.Errorf("List(a) = %q, %v", got, err)
			}
		})
	})

	t.Run("Overwrite", func(t *testing.T) {
		s := fresh(t)
		before, _ := s.Stat(t.Context(), "f.txt")
		time.Sleep(5 * time.Millisecond)
		if err := s.Store(t.Context(), "f.txt", []byte("longer value")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(t.Context(), "f.txt")
		if err != nil || string(got) != "longer value" {
			t.Fatalf("Load = %q, %v", got, err)
		}
		after, _ := s.Stat(t.Context(), "f.txt")
		if after.Size != 12 || !after.Modified.After(before.Modified) {
			t.Errorf("Stat after overwrite = %+v (before %+v)", after, before)
		}
		if all, _ := s.List(t.Context(), "", false); slices.Index(all, "f.txt") < 0 || len(all) != 3 {
			t.Errorf("List after overwrite = %q", all)
		}
	})

	t.Run("BinaryValues", func(t *testing.T) {
		s := fresh(t)
		all := make([]byte, 256*4)
		for i := range all {
			all[i] = byte(i)
		}
		for _, tc := range []struct {
			name string
			val  []byte
		}{
			{"every byte", all},
			{"empty", []byte{}},
			{"NUL and CRLF", []byte("\x00\r\n\x00$-1\r\n")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				key := "bin/" + tc.name
				if err := s.Store(t.Context(), key, tc.val); err != nil {
					t.Fatal(err)
				}
				got, err := s.Load(t.Context(), key)
				if err != nil || !bytes.Equal(got, tc.val) {
					t.Fatalf("Load = %q, %v; want %q", got, err, tc.val)
				}
				if info, err := s.Stat(t.Context(), key); err != nil || info.Size != int64(len(tc.val)) || !info.IsTerminal {
					t.Fatalf("Stat = %+v, %v", info, err)
				}
			})
		}
	})

	t.Run("InvalidKey", func(t *testing.T) {
		s := fresh(t)
		for _, k := range []string{"", "/", "."} {
			if err := s.Store(t.Context(), k, []byte("x")); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Store(%q) = %v, want ErrInvalidKey", k, err)
			}
		}
	})

	t.Run("PrefixIsolation", func(t *testing.T) {
		s1 := newTestStorage(t, srv, Options{Prefix: "iso1"})
		s2 := newTestStorage(t, srv, Options{Prefix: "iso2"})
		ctx := t.Context()
		if err := s1.Store(ctx, "certs/x.crt", []byte("one")); err != nil {
			t.Fatal(err)
		}
		if _, err := s2.Load(ctx, "certs/x.crt"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("other prefix Load = %v, want fs.ErrNotExist", err)
		}
		if s2.Exists(ctx, "certs") {
			t.Error("other prefix sees directory")
		}
		if _, err := s2.List(ctx, "", true); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("other prefix List = %v, want fs.ErrNotExist", err)
		}
		if err := s2.Store(ctx, "certs/x.crt", []byte("two")); err != nil {
			t.Fatal(err)
		}
		if err := s2.Delete(ctx, "certs"); err != nil {
			t.Fatal(err)
		}
		if got, err := s1.Load(ctx, "certs/x.crt"); err != nil || string(got) != "one" {
			t.Errorf("Delete under other prefix touched ours: %q, %v", got, err)
		}
		ok1, err1 := s1.TryLock(ctx, "same")
		ok2, err2 := s2.TryLock(ctx, "same")
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			t.Errorf("locks of the same name under two prefixes: %v %v %v %v", ok1, err1, ok2, err2)
		}
		_ = s1.Unlock(ctx, "same")
		_ = s2.Unlock(ctx, "same")
	})

	t.Run("ContextCancelled", func(t *testing.T) {
		s := fresh(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := s.Load(ctx, "f.txt"); !errors.Is(err, context.Canceled) {
			t.Errorf("Load with cancelled ctx = %v", err)
		}
		if err := s.Store(ctx, "g", nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Store with cancelled ctx = %v", err)
		}
		if err := s.Lock(ctx, "l"); !errors.Is(err, context.Canceled) {
			t.Errorf("Lock with cancelled ctx = %v", err)
		}
	})

	t.Run("ConcurrentStores", func(t *testing.T) {
		s := newTestStorage(t, srv, Options{Prefix: "conc"})
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				if err := s.Store(t.Context(), fmt.Sprintf("d%d/k%03d", i%7, i), []byte{byte(i)}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		all, err := s.List(t.Context(), "", true)
		if err != nil || len(all) != 200+7 {
			t.Fatalf("List after 200 concurrent stores: %d keys, %v", len(all), err)
		}
	})
}

func TestClosedStorage(t *testing.T) {
	srv := startRedis(t)
	s, err := New(Options{Addrs: []string{srv.addr}, Prefix: "closed"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := t.Context()
	if _, err := s.Load(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Load after Close = %v", err)
	}
	if err := s.Lock(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Lock after Close = %v", err)
	}
	if ok, err := s.TryLock(ctx, "x"); ok || !errors.Is(err, ErrClosed) {
		t.Errorf("TryLock after Close = %v, %v", ok, err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no address", Options{}},
		{"db on cluster", Options{Addrs: []string{"a:1", "b:1"}, DB: 2}},
		{"brace in prefix", Options{Addrs: []string{"a:1"}, Prefix: "x}"}},
		{"negative lease", Options{Addrs: []string{"a:1"}, LockLease: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(tc.opts); err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}
