package s3embed

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"

	"github.com/rclone/gofakes3"
)

// Layout of the root directory:
//
//	<root>/<bucket>/<key>                  object data, one file per key
//	<root>/.s3meta/<bucket>/<hh>/<h>.json  sidecar per key: size, MD5, mtime, metadata
//	<root>/.s3tmp/                         temp files, renamed into place
//	<root>/.s3uploads/<uploadID>/<part>    multipart parts until completion
//
// Bucket names never start with '.', so the hidden directories can never
// be mistaken for a bucket, and sidecars are named by a hash of the key so
// no key can collide with one.
const (
	metaDirName    = ".s3meta"
	tmpDirName     = ".s3tmp"
	uploadsDirName = ".s3uploads"
)

// validBucket reports whether name is a valid S3 bucket name (and therefore
// a safe directory name).
func validBucket(name string) bool {
	return gofakes3.ValidateBucketName(name) == nil
}

// errInvalidKey is the S3 error for a key that cannot be stored on disk.
func errInvalidKey(key string) error {
	return gofakes3.ErrorInvalidArgument("key", key, "object key is not allowed by this server (empty, absolute, '.' or '..' segment, empty segment, segment over 255 bytes or NUL)")
}

// isDirMarker reports whether key is a "directory marker" (ends in "/").
// Markers have a sidecar but no data file.
func isDirMarker(key string) bool { return strings.HasSuffix(key, "/") }

// keyPath returns the data file path of key inside bucketDir, or an error if
// the key could escape the bucket directory or would not round-trip through
// the file system (so that two keys can never map to one file).
func keyPath(bucketDir, key string) (string, error) {
	if key == "" || len(key) > gofakes3.KeySizeLimit || strings.ContainsRune(key, 0) || strings.HasPrefix(key, "/") {
		return "", errInvalidKey(key)
	}
	rel := strings.TrimSuffix(key, "/")
	if rel == "" {
		return "", errInvalidKey(key)
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg == "." || seg == ".." || len(seg) > maxSegmentLen {
			return "", errInvalidKey(key)
		}
	}
	p := filepath.Join(bucketDir, filepath.FromSlash(rel))
	back, err := filepath.Rel(bucketDir, p)
	if err != nil || filepath.ToSlash(back) != rel || filepath.IsAbs(rel) || filepath.VolumeName(rel) != "" {
		// Catches separators other than '/' (Windows) and anything the
		// cleaner rewrote.
		return "", errInvalidKey(key)
	}
	return p, nil
}

// sidecarName is the sidecar path of key relative to the bucket's meta dir.
func sidecarName(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return filepath.Join(h[:2], h+".json")
}
