package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strconv"
	"time"
)

// Fingerprint hashes a bucket listing for BucketFingerprint methods: one
// length-prefixed record per object (key, ETag, size, last modified), so
// that no two different listings hash the same input. Add the objects in
// listing order, then Sum.
type Fingerprint struct {
	h     hash.Hash
	count int
	buf   []byte
}

// NewFingerprint starts an empty fingerprint.
func NewFingerprint() *Fingerprint { return &Fingerprint{h: sha256.New()} }

// Add records one object.
func (f *Fingerprint) Add(key, etag string, size int64, modified time.Time) {
	b := f.buf[:0]
	b = strconv.AppendInt(b, int64(len(key)), 10)
	b = append(b, ':')
	b = append(b, key...)
	b = strconv.AppendInt(b, int64(len(etag)), 10)
	b = append(b, ':')
	b = append(b, etag...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, size, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, modified.UnixNano(), 10)
	b = append(b, '\n')
	f.h.Write(b)
	f.buf = b
	f.count++
}

// Sum is "v1-COUNT-SHA256HEX" of what was added.
func (f *Fingerprint) Sum() string {
	return "v1-" + strconv.Itoa(f.count) + "-" + hex.EncodeToString(f.h.Sum(nil))
}
