package s3embed_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

// TestPayloadModes puts objects the ways aws-sdk-go-v2 sends bodies: a
// signed SHA-256 (plain HTTP), UNSIGNED-PAYLOAD (TLS), and aws-chunked
// STREAMING-UNSIGNED-PAYLOAD-TRAILER with an x-amz-checksum-* trailer (TLS
// plus a checksum algorithm). Each must store exactly the body.
func TestPayloadModes(t *testing.T) {
	keys := &keyring{keys: map[string][2]string{"AK1": {"s1", "tenant-1"}}}
	srv, err := s3embed.New(t.TempDir(), keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.CreateBucket(context.Background(), "tenant-1"); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	record := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPut {
				seen[r.Header.Get("X-Amz-Content-Sha256")] = true
			}
			h.ServeHTTP(w, r)
		})
	}
	plain := httptest.NewServer(record(srv.Handler()))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(record(srv.Handler()))
	defer tlsSrv.Close()
	tlsClient := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(tlsSrv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AK1", "s1", ""),
		Retryer:     aws.NopRetryer{}, HTTPClient: tlsSrv.Client(),
	})
	plainClient := newClient(plain.URL, "AK1", "s1")

	tests := []struct {
		name    string
		client  *s3.Client
		algo    types.ChecksumAlgorithm
		wantSHA string
	}{
		{"signed payload over http", plainClient, "", "sha256-hex"},
		{"unsigned payload over tls", tlsClient, "", "UNSIGNED-PAYLOAD"},
		{"chunked trailer sha256", tlsClient, types.ChecksumAlgorithmSha256, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
		{"chunked trailer crc32", tlsClient, types.ChecksumAlgorithmCrc32, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clear(seen)
			body := bytes.Repeat([]byte(tc.name), 1000)
			in := &s3.PutObjectInput{Bucket: aws.String("tenant-1"), Key: aws.String(tc.name), Body: bytes.NewReader(body)}
			if tc.algo != "" {
				in.ChecksumAlgorithm = tc.algo
			}
			out, err := tc.client.PutObject(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(out.ETag) != `"`+md5hex(body)+`"` {
				t.Errorf("ETag = %s", aws.ToString(out.ETag))
			}
			want := tc.wantSHA
			if want == "sha256-hex" {
				sum := sha256.Sum256(body)
				want = hex.EncodeToString(sum[:])
			}
			if !seen[want] {
				t.Errorf("client did not send x-amz-content-sha256 %q (saw %v)", want, seen)
			}
			if got := get(t, plainClient, "tenant-1", tc.name); !bytes.Equal(got, body) {
				t.Errorf("stored %d bytes, want %d", len(got), len(body))
			}
		})
	}
}

// TestBodyMustMatchSignedHash sends a request signed for one body with
// another: the signature is valid, the body is not, nothing is stored.
func TestBodyMustMatchSignedHash(t *testing.T) {
	e := newEnv(t)
	good, evil := []byte("the signed body"), []byte("a different body")
	sum := sha256.Sum256(good)
	hash := hex.EncodeToString(sum[:])
	req, err := http.NewRequest(http.MethodPut, e.url+"/"+bucketA+"/swap.md", bytes.NewReader(evil))
	if err != nil {
		t.Fatal(err)
	}
	signV4(t, req, "AKA", "secret-a", hash)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status = %d, want 400", resp.StatusCode)
	}
	_, err = e.a.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("swap.md")})
	if status(err) != http.StatusNotFound {
		t.Errorf("object stored despite hash mismatch: %v", err)
	}

	// The same request with the right body works.
	req, _ = http.NewRequest(http.MethodPut, e.url+"/"+bucketA+"/swap.md", bytes.NewReader(good))
	signV4(t, req, "AKA", "secret-a", hash)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("good body status = %d", resp.StatusCode)
	}
}
