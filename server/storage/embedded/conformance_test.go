package embedded_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/embedded"
	"github.com/basicmachines-co/bm-agent/server/storage/storagetest"
)

// confIndex is the store's key table for the conformance suite.
type confIndex struct {
	mu     sync.Mutex
	bucket map[string]string
	active map[string]bool
}

func (c *confIndex) LookupKey(ctx context.Context, ak string) (storage.KeyRecord, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.bucket[ak]
	if !ok {
		return storage.KeyRecord{}, storage.ErrNotFound
	}
	return storage.KeyRecord{TenantID: "T", Bucket: b, Active: c.active[ak]}, nil
}

// TestConformance runs the shared provider suite against the embedded
// endpoint; the index plays the server's store (a key works once recorded
// active, and stops when marked revoked).
func TestConformance(t *testing.T) {
	idx := &confIndex{bucket: map[string]string{}, active: map[string]bool{}}
	var handler http.Handler = http.NotFoundHandler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	p := embedded.New(nil, []byte("conformance-master-key-0123456789"), idx, hs.URL, "", nil)
	srv, err := s3embed.New(t.TempDir(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.SetServer(srv)
	handler = srv.Handler()
	storagetest.Run(t, p, storagetest.Options{
		Activate: func(key storage.Key, bucket string) {
			idx.mu.Lock()
			defer idx.mu.Unlock()
			idx.bucket[key.AccessKey], idx.active[key.AccessKey] = bucket, true
		},
		Deactivate: func(key storage.Key) {
			idx.mu.Lock()
			defer idx.mu.Unlock()
			idx.active[key.AccessKey] = false
		},
	})
}
