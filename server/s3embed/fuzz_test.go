package s3embed_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

// FuzzS3Request sends the endpoint requests of any method, path, query,
// headers and body, signed with bucket-a's key when they carry no
// Authorization of their own (so the fuzz reaches past the signature into
// the request parsers), and checks what must hold for any request: the
// handler does not panic; a client's bad request is a 4xx (or 501 for an
// operation the endpoint does not serve), never a 500; bucket-b, which
// the key may not touch, is unchanged; and nothing is written outside
// the endpoint's root or beside its buckets. Its seed corpus is
// testdata/fuzz/FuzzS3Request (go test runs it; go test -fuzz explores).
func FuzzS3Request(f *testing.F) {
	seeds := []struct {
		method, target, headers string
		body                    []byte
	}{
		{"GET", "/", "", nil},
		{"GET", "/bucket-a?list-type=2&prefix=notes/&delimiter=/", "", nil},
		{"GET", "/bucket-a?list-type=2&max-keys=-1&continuation-token=%ff", "", nil},
		{"GET", "/bucket-a?uploads", "", nil},
		{"GET", "/bucket-a?versions", "", nil},
		{"PUT", "/bucket-a/notes/a.md", "Content-Type: text/markdown", []byte("# a\n")},
		{"PUT", "/bucket-a/notes/a.md", "X-Amz-Meta-Mtime: 1700000000.5\nIf-None-Match: *", []byte("# a\n")},
		{"PUT", "/bucket-a/b.md", "X-Amz-Copy-Source: /bucket-b/secret.md", nil},
		{"PUT", "/bucket-a/b.md", "X-Amz-Copy-Source: bucket-a/notes%2Fa.md\nX-Amz-Metadata-Directive: REPLACE", nil},
		{"PUT", "/bucket-a/../bucket-b/x.md", "", []byte("x")},
		{"PUT", "/bucket-a/%2e%2e/%2e%2e/escape.md", "", []byte("x")},
		{"PUT", "/bucket-b/x.md", "", []byte("not yours")},
		{"PUT", "/bucket-a/dir/", "", nil},
		{"PUT", "/bucket-c", "", nil},
		{"POST", "/bucket-a/big.md?uploads", "", nil},
		{"PUT", "/bucket-a/big.md?partNumber=1&uploadId=nope", "", []byte("part")},
		{"POST", "/bucket-a/big.md?uploadId=nope", "", []byte("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>")},
		{"POST", "/bucket-a?delete", "Content-Type: application/xml", []byte("<Delete><Object><Key>notes/a.md</Key></Object><Object><Key>../../bucket-b/secret.md</Key></Object></Delete>")},
		{"POST", "/bucket-a?delete", "", []byte("<Delete><Object><Key>")},
		{"DELETE", "/bucket-a/notes/a.md", "", nil},
		{"DELETE", "/bucket-b/secret.md", "", nil},
		{"DELETE", "/bucket-a", "", nil},
		{"HEAD", "/bucket-a/notes/a.md", "Range: bytes=5-1", nil},
		{"GET", "/bucket-a/notes/a.md", "Range: bytes=-0\nIf-Modified-Since: yesterday", nil},
		{"GET", "/bucket-a/notes/a.md?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKA%2F20261203%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=00&X-Amz-Expires=-5", "Authorization: none", nil},
		{"PUT", "/bucket-a/c.md", "Authorization: AWS4-HMAC-SHA256 Credential=AKA/20261203/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=zz\nX-Amz-Date: 20261203T000000Z", []byte("c")},
		{"PUT", "/bucket-a/c.md", "Authorization: AWS4-HMAC-SHA256 Credential=AKA\nX-Amz-Content-Sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD", []byte("1;chunk-signature=00\r\nc\r\n0;chunk-signature=00\r\n\r\n")},
		{"PUT", "/bucket-a/d.md", "X-Amz-Content-Sha256: UNSIGNED-PAYLOAD\nContent-Encoding: aws-chunked\nX-Amz-Decoded-Content-Length: 99", []byte("zz;\r\n")},
		{"PUT", "/bucket-a/%00.md", "", []byte("nul")},
		{"GET", "/bucket-a?location", "", nil},
		{"PUT", "/bucket-a?tagging", "", []byte("<Tagging/>")},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.headers, s.body)
	}

	parent := f.TempDir()
	root := filepath.Join(parent, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		f.Fatal(err)
	}
	keys := &keyring{keys: map[string][2]string{}}
	srv, err := s3embed.New(root, keys, nil)
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	for _, b := range []string{bucketA, bucketB} {
		if err := srv.CreateBucket(ctx, b); err != nil {
			f.Fatal(err)
		}
	}
	keys.set("AKA", "secret-a", bucketA)
	keys.set("AKB", "secret-b", bucketB)
	// bucket-b holds a note the fuzz must never reach with bucket-a's key.
	seed, err := http.NewRequest(http.MethodPut, "http://s3.test/"+bucketB+"/secret.md", bytes.NewReader([]byte("b's note")))
	if err != nil {
		f.Fatal(err)
	}
	sign(f, seed, "AKB", "secret-b", []byte("b's note"))
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, seed)
	if rec.Code != http.StatusOK {
		f.Fatalf("put bucket-b's note: %d %s", rec.Code, rec.Body)
	}
	wantB, err := srv.BucketFingerprint(ctx, bucketB)
	if err != nil {
		f.Fatal(err)
	}
	entries := func(dir string) []string {
		des, err := os.ReadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		return names
	}
	wantRoot, wantParent := entries(root), entries(parent)
	h := srv.Handler()

	f.Fuzz(func(t *testing.T, method, target, headers string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://s3.test"+target, bytes.NewReader(body))
		if err != nil || req.URL.Host != "s3.test" {
			return // not a request a client could send
		}
		hdr, err := textproto.NewReader(bufio.NewReader(strings.NewReader(headers + "\r\n\r\n"))).ReadMIMEHeader()
		if err == nil {
			for k, vs := range hdr {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
		}
		if req.Header.Get("Authorization") == "" && req.URL.Query().Get("X-Amz-Signature") == "" {
			sign(t, req, "AKA", "secret-a", body)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusNotImplemented {
			t.Errorf("%s %s (headers %q, %d-byte body): HTTP %d %s", method, target, headers, len(body), rec.Code, rec.Body)
		}
		if got, err := srv.BucketFingerprint(ctx, bucketB); err != nil || got != wantB {
			t.Errorf("%s %s with bucket-a's key changed bucket-b (err %v)", method, target, err)
		}
		if got := entries(root); !slices.Equal(got, wantRoot) {
			t.Errorf("%s %s: the endpoint's root holds %v, want %v", method, target, got, wantRoot)
		}
		if got := entries(parent); !slices.Equal(got, wantParent) {
			t.Errorf("%s %s: wrote beside the endpoint's root: %v", method, target, got)
		}
	})
}

// sign signs req with SigV4 (the body's SHA-256 as its payload hash,
// unless the request names another), with the Content-Length header a
// client sends (a handler called directly sees only what is set).
func sign(t testing.TB, req *http.Request, access, secret string, body []byte) {
	t.Helper()
	if req.Header.Get("Content-Length") == "" && (len(body) > 0 || req.Method == http.MethodPut || req.Method == http.MethodPost) {
		req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	hash := req.Header.Get("X-Amz-Content-Sha256")
	if hash == "" {
		sum := sha256.Sum256(body)
		hash = hex.EncodeToString(sum[:])
	}
	signV4(t, req, access, secret, hash)
}
