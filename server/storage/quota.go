package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// Unlimited is the quota of a tier without one.
const Unlimited int64 = -1

// Tiers of the Basic Memory subscriptions (the claims' subscription_tier).
const (
	TierFree = "free"
	TierPro  = "pro"
	TierTeam = "team"
)

// Default quotas of the tiers: Basic Memory's table (Pro 10 GB, Team
// 100 GB, no cloud storage on Free), in decimal gigabytes.
const (
	DefaultQuotaFree int64 = 0
	DefaultQuotaPro  int64 = 10 * 1000 * 1000 * 1000
	DefaultQuotaTeam int64 = 100 * 1000 * 1000 * 1000
)

// Quotas are the storage quotas of the subscription tiers: the bytes a
// tenant's bucket may hold.
type Quotas struct {
	// Tiers maps a tier, in lower case, to its quota in bytes (Unlimited
	// for none; 0: nothing may be stored).
	Tiers map[string]int64
	// Other is the quota of every tier Tiers does not name (such as the
	// "basic" tier bm-server gives the tenants it creates itself).
	Other int64
}

// DefaultQuotas are Basic Memory's: DefaultQuotaFree, DefaultQuotaPro
// and DefaultQuotaTeam, and no quota for any other tier.
func DefaultQuotas() Quotas {
	return Quotas{
		Tiers: map[string]int64{TierFree: DefaultQuotaFree, TierPro: DefaultQuotaPro, TierTeam: DefaultQuotaTeam},
		Other: Unlimited,
	}
}

// For returns the quota of tier in bytes, or Unlimited.
func (q Quotas) For(tier string) int64 {
	if v, ok := q.Tiers[strings.ToLower(strings.TrimSpace(tier))]; ok {
		return normQuota(v)
	}
	return normQuota(q.Other)
}

func normQuota(v int64) int64 {
	if v < 0 {
		return Unlimited
	}
	return v
}

// ParseQuota reads a quota: a size such as "10GB" (decimal), "10GiB"
// (binary) or a plain number of bytes, or "unlimited" (also "none", "-1").
func ParseQuota(s string) (int64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "unlimited", "none", "-1":
		return Unlimited, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("parse quota %q: want a size such as 10GB or 10GiB, or unlimited: %w", s, err)
	}
	if n > 1<<62 {
		return 0, fmt.Errorf("parse quota %q: too large", s)
	}
	return int64(n), nil
}

// FormatQuota renders a quota as ParseQuota reads it.
func FormatQuota(v int64) string {
	if v < 0 {
		return "unlimited"
	}
	units := []struct {
		suffix string
		size   int64
	}{{"TB", 1e12}, {"TiB", 1 << 40}, {"GB", 1e9}, {"GiB", 1 << 30}, {"MB", 1e6}, {"MiB", 1 << 20}, {"kB", 1e3}, {"KiB", 1 << 10}}
	for _, u := range units {
		if v != 0 && v%u.size == 0 {
			return strconv.FormatInt(v/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

// QuotaSetter is an optional interface of a Provider whose service can
// hold a bucket to a quota itself (MinIO's hard bucket quota):
// SetBucketQuota sets bucket's to bytes, or removes it for Unlimited.
type QuotaSetter interface {
	SetBucketQuota(ctx context.Context, bucket string, bytes int64) error
}

// UsageReporter is an optional interface of a Provider that knows cheaply
// how many bytes a bucket holds (its objects and the parts of its
// unfinished multipart uploads).
type UsageReporter interface {
	BucketUsage(ctx context.Context, bucket string) (int64, error)
}
