package hooks

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestVerifyTimestamped(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"a":1}`)
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	ts := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	sign := func(d time.Duration) string { return SignTimestamped(secret, now.Add(d).Unix(), body) }
	tests := []struct {
		name      string
		secret    []byte
		body      []byte
		ts, sig   string
		wantError error
	}{
		{"fresh", secret, body, ts(0), sign(0), nil},
		{"4 minutes old", secret, body, ts(-4 * time.Minute), sign(-4 * time.Minute), nil},
		{"4 minutes ahead", secret, body, ts(4 * time.Minute), sign(4 * time.Minute), nil},
		{"6 minutes old", secret, body, ts(-6 * time.Minute), sign(-6 * time.Minute), ErrStale},
		{"6 minutes ahead", secret, body, ts(6 * time.Minute), sign(6 * time.Minute), ErrStale},
		{"body-only signature", secret, body, "", Sign(secret, body), ErrTimestampRequired},
		{"body-only signature with a timestamp", secret, body, ts(0), Sign(secret, body), ErrBadSignature},
		{"tampered timestamp", secret, body, ts(time.Minute), sign(0), ErrBadSignature},
		{"malformed timestamp", secret, body, "now", sign(0), ErrBadTimestamp},
		{"other body", secret, []byte(`{"a":2}`), ts(0), sign(0), ErrBadSignature},
		{"other key", []byte("x"), body, ts(0), sign(0), ErrBadSignature},
		{"no prefix", secret, body, ts(0), strings.TrimPrefix(sign(0), "sha256="), ErrBadSignature},
		{"not hex", secret, body, ts(0), "sha256=zz", ErrBadSignature},
		{"empty secret", nil, body, ts(0), SignTimestamped(nil, now.Unix(), body), ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyTimestamped(tc.secret, tc.body, tc.ts, tc.sig, now)
			if !errors.Is(err, tc.wantError) || (tc.wantError == nil) != (err == nil) {
				t.Errorf("= %v, want %v", err, tc.wantError)
			}
			if err != nil && strings.Contains(err.Error(), tc.sig) {
				t.Errorf("error %q carries the signature", err)
			}
		})
	}
}

func TestReplayCache(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name  string
		size  int
		steps []struct {
			sig  string
			at   time.Duration
			want error
		}
	}{
		{"replay refused within the window, accepted after", 10, []struct {
			sig  string
			at   time.Duration
			want error
		}{
			{"a", 0, nil},
			{"a", time.Second, ErrReplay},
			{"b", time.Second, nil},
			{"a", 2*MaxSkew - time.Second, ErrReplay},
			{"a", 2 * MaxSkew, nil}, // the timestamp check refuses it by now
		}},
		{"bounded: full refuses, expiry frees", 2, []struct {
			sig  string
			at   time.Duration
			want error
		}{
			{"a", 0, nil},
			{"b", time.Minute, nil},
			{"c", 2 * time.Minute, ErrReplayCacheFull},
			{"a", 3 * time.Minute, ErrReplay},
			{"c", 2 * MaxSkew, nil}, // a expired
			{"d", 2 * MaxSkew, ErrReplayCacheFull},
			{"d", 2*MaxSkew + time.Minute, nil}, // b expired
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewReplayCache(tc.size)
			for i, st := range tc.steps {
				if err := c.Check(st.sig, now.Add(st.at)); !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
					t.Errorf("step %d (%s at %s): = %v, want %v", i, st.sig, st.at, err, st.want)
				}
				if c.Len() > tc.size {
					t.Errorf("step %d: %d entries, bound %d", i, c.Len(), tc.size)
				}
			}
		})
	}
}

func TestReplayCacheConcurrentOnce(t *testing.T) {
	c := NewReplayCache(0)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Check("same", now) == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if accepted != 1 {
		t.Errorf("accepted %d times, want once", accepted)
	}
}
