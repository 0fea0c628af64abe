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
