package store

import (
	"context"
	"fmt"
	"time"
)

// TakeLease gives holder the lease of job until now+d and reports true
// when no one else holds it: when it is free, expired, or holder's own
// (which renews it). With several replicas on one database, the one that
// gets true runs the job's pass; the others skip theirs. It is one atomic
// statement on both dialects, so two replicas asking at once cannot both
// get it.
func (s *Store) TakeLease(ctx context.Context, job, holder string, now time.Time, d time.Duration) (bool, error) {
	const op = "take lease"
	now = ts(now)
	n, err := s.execAffected(ctx, op, `INSERT INTO job_leases (job, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= ?`,
		job, holder, ts(now.Add(d)), now)
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// ReleaseLease gives up holder's lease of job (at shutdown, so another
// replica takes the job at once rather than when the lease expires).
func (s *Store) ReleaseLease(ctx context.Context, job, holder string) error {
	if _, err := s.exec(ctx, `DELETE FROM job_leases WHERE job = ? AND holder = ?`, job, holder); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}
