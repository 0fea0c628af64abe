package storage_test

import (
	"testing"

	"github.com/basicmachines-co/bm-agent/server/storage"
)

func TestBucketPolicy(t *testing.T) {
	for _, bad := range []string{"", "a/b", "a*", "a?"} {
		if _, err := storage.BucketPolicy(bad); err == nil {
			t.Errorf("BucketPolicy(%q) = nil error", bad)
		}
	}
}

func TestQuotas(t *testing.T) {
	q := storage.DefaultQuotas()
	for _, tc := range []struct {
		tier string
		want int64
	}{
		{"pro", 10_000_000_000},
		{"Pro", 10_000_000_000},
		{"team", 100_000_000_000},
		{"free", 0},
		{"basic", storage.Unlimited},
		{"", storage.Unlimited},
	} {
		if got := q.For(tc.tier); got != tc.want {
			t.Errorf("DefaultQuotas().For(%q) = %d, want %d", tc.tier, got, tc.want)
		}
	}
}

func TestParseQuota(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"10GB", 10_000_000_000},
		{"10 GB", 10_000_000_000},
		{"10GiB", 10 << 30},
		{"512MiB", 512 << 20},
		{"1234", 1234},
		{"0", 0},
		{"unlimited", storage.Unlimited},
		{"none", storage.Unlimited},
		{"-1", storage.Unlimited},
	} {
		got, err := storage.ParseQuota(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseQuota(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
		if back, err := storage.ParseQuota(storage.FormatQuota(got)); err != nil || back != got {
			t.Errorf("ParseQuota(FormatQuota(%d) = %q) = %d, %v", got, storage.FormatQuota(got), back, err)
		}
	}
	for _, bad := range []string{"", "ten", "-5", "10XB"} {
		if _, err := storage.ParseQuota(bad); err == nil {
			t.Errorf("ParseQuota(%q) succeeded", bad)
		}
	}
}
