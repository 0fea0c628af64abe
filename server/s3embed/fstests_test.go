//go:build fstests

package s3embed_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rcs3 "github.com/rclone/rclone/backend/s3"
	"github.com/rclone/rclone/fstest/fstests"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
)

// TestFstests runs rclone's own backend suite (fstests of the rclone
// version in go.mod) against the embedded endpoint on loopback, with a
// bucket-scoped key on a bucket named as bm-server names them
// (basic-memory-{tenant}, 49 characters), as issue 13's conformance runs
// did. It is behind the fstests build tag (minutes, and rclone's suite,
// not ours, decides what passes):
//
//	BM_FSTESTS_PROVIDER=Minio go test -tags fstests -run TestFstests -v ./server/s3embed/
//
// BM_FSTESTS_PROVIDER is rclone's provider setting, Other by default.
// BM_FSTESTS_TARGET=minio runs the same suite against a real MinIO
// (miniotest) with a key bm-server's MinIO provider minted, for the
// comparison the issue asks for.
func TestFstests(t *testing.T) {
	provider := os.Getenv("BM_FSTESTS_PROVIDER")
	if provider == "" {
		provider = "Other"
	}
	endpoint, access, secret, bucket := fstestsTarget(t)
	// fstests looks for rclone's test server scripts under the working
	// directory; there are none to start here.
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "fstest", "testserver", "init.d"), 0o750); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)

	name := "TestS3Embedded" + provider
	env := "RCLONE_CONFIG_" + strings.ToUpper(name) + "_"
	for k, v := range map[string]string{
		"TYPE":              "s3",
		"PROVIDER":          provider,
		"ENV_AUTH":          "false",
		"ACCESS_KEY_ID":     access,
		"SECRET_ACCESS_KEY": secret,
		"ENDPOINT":          endpoint,
		"REGION":            "us-east-1",
		"FORCE_PATH_STYLE":  "true",
		"NO_CHECK_BUCKET":   "true",
	} {
		t.Setenv(env+k, v)
	}
	t.Logf("target %s, provider %s, bucket %s (%d characters)", endpoint, provider, bucket, len(bucket))
	fstests.Run(t, &fstests.Opt{
		RemoteName:    name + ":" + bucket,
		NilObject:     (*rcs3.Object)(nil),
		TiersToTest:   []string{"STANDARD"},
		ChunkedUpload: fstests.ChunkedUploadConfig{MinChunkSize: 5 << 20},
	})
}

// fstestsTarget starts the server the suite runs against and returns its
// URL, a key scoped to one bucket, and that bucket.
func fstestsTarget(t *testing.T) (endpoint, access, secret, bucket string) {
	if os.Getenv("BM_FSTESTS_TARGET") == "minio" {
		ms := miniotest.Start(t)
		bucket, key := ms.Bucket(t, "basic-memory-0f8b5a2c-3d4e-4f60-8a9b")
		return ms.URL, key.AccessKey, key.SecretKey, bucket
	}
	bucket = "basic-memory-0f8b5a2c-3d4e-4f60-8a9b-0c1d2e3f4a5b"
	keys := &keyring{keys: map[string][2]string{"AKFSTESTS": {"fstests-secret", bucket}}}
	srv, err := s3embed.New(t.TempDir(), keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL, "AKFSTESTS", "fstests-secret", bucket
}
