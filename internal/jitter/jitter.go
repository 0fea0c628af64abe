// Package jitter spreads waits: retries and periodic work of many clients
// or replicas that would otherwise all fire at once.
package jitter

import (
	"math/rand/v2"
	"time"
)

// Spread returns d times a random factor in [0.5, 1.5).
func Spread(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}
