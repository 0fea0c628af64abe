package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTakeLease(t *testing.T) {
	eachDB(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		now := time.Now()
		const d = time.Minute
		steps := []struct {
			name   string
			holder string
			at     time.Time
			want   bool
		}{
			{"free: a takes it", "a", now, true},
			{"held by a: b does not", "b", now.Add(time.Second), false},
			{"a renews", "a", now.Add(30 * time.Second), true},
			{"renewed: still a's after the first term", "b", now.Add(d + time.Second), false},
			{"expired: b takes it", "b", now.Add(30*time.Second + d), true},
			{"b's now: a does not", "a", now.Add(31*time.Second + d), false},
		}
		for _, st := range steps {
			got, err := s.TakeLease(ctx, "deletion-retry", st.holder, st.at, d)
			if err != nil || got != st.want {
				t.Fatalf("%s: TakeLease = %v, %v; want %v", st.name, got, err, st.want)
			}
		}
		if got, err := s.TakeLease(ctx, "orphans", "a", now, d); err != nil || !got {
			t.Fatalf("another job's lease = %v, %v; want it free", got, err)
		}
		if err := s.ReleaseLease(ctx, "deletion-retry", "a"); err != nil { // not a's: a no-op
			t.Fatal(err)
		}
		if got, _ := s.TakeLease(ctx, "deletion-retry", "a", now.Add(32*time.Second+d), d); got {
			t.Fatal("a released b's lease")
		}
		if err := s.ReleaseLease(ctx, "deletion-retry", "b"); err != nil {
			t.Fatal(err)
		}
		if got, err := s.TakeLease(ctx, "deletion-retry", "a", now.Add(33*time.Second+d), d); err != nil || !got {
			t.Fatalf("after b released it: TakeLease(a) = %v, %v", got, err)
		}

		// Many replicas asking at once: exactly one gets it.
		var won atomic.Int32
		var wg sync.WaitGroup
		at := now.Add(time.Hour)
		for i := range 16 {
			wg.Go(func() {
				ok, err := s.TakeLease(ctx, "bucket-fallback", fmt.Sprintf("replica-%d", i), at, d)
				if err != nil {
					t.Errorf("replica %d: %v", i, err)
				}
				if ok {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Errorf("%d replicas got the lease at once, want 1", won.Load())
		}
	})
}
