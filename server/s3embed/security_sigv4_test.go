package s3embed_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/minio/minio-go/v7"
	miniocreds "github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/signer"

	"github.com/basicmachines-co/bm-agent/server/s3embed"
)

// TestSecuritySigV4Scope: a request whose signature is valid for the
// scope it names, but whose scope does not belong to the request (its
// date is not the day of X-Amz-Date, its region is not the endpoint's,
// its service is not s3, its terminator is not aws4_request), is refused
// with AWS's codes, signed in a header or presigned. Before, the scope was
// never compared with the request and every one of these was accepted.
func TestSecuritySigV4Scope(t *testing.T) {
	e := newEnv(t)
	put(t, e.a, bucketA, "note.md", []byte("a note"))
	now := time.Now().UTC()
	yesterday := now.Add(-24 * time.Hour).Format("20060102")
	objURL := e.url + "/" + bucketA + "/note.md"
	with := func(f func(*scope)) scope { sc := goodScope(now); f(&sc); return sc }

	tests := []struct {
		name      string
		sc        scope
		presigned bool
		status    int
		code      string
	}{
		{"header, right scope", goodScope(now), false, http.StatusOK, ""},
		{"header, date of another day", with(func(s *scope) { s.date = yesterday }), false, http.StatusBadRequest, "AuthorizationHeaderMalformed"},
		{"header, other region", with(func(s *scope) { s.region = "eu-west-1" }), false, http.StatusBadRequest, "AuthorizationHeaderMalformed"},
		{"header, other service", with(func(s *scope) { s.service = "iam" }), false, http.StatusBadRequest, "AuthorizationHeaderMalformed"},
		{"header, other terminator", with(func(s *scope) { s.terminator = "aws4_reques" }), false, http.StatusBadRequest, "AuthorizationHeaderMalformed"},
		{"presigned, right scope", goodScope(now), true, http.StatusOK, ""},
		{"presigned, date of another day", with(func(s *scope) { s.date = yesterday }), true, http.StatusBadRequest, "AuthorizationQueryParametersError"},
		{"presigned, other region", with(func(s *scope) { s.region = "eu-west-1" }), true, http.StatusBadRequest, "AuthorizationQueryParametersError"},
	}
	accepted, wrong := 0, 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			var err error
			if tc.presigned {
				resp, err = http.Get(presignWithScope(objURL, "AKA", "secret-a", tc.sc, now))
			} else {
				req, _ := http.NewRequest(http.MethodGet, objURL, nil)
				signWithScope(req, "AKA", "secret-a", tc.sc, now, "UNSIGNED-PAYLOAD")
				resp, err = http.DefaultClient.Do(req)
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if tc.code != "" {
				wrong++
				if resp.StatusCode == http.StatusOK {
					accepted++
				}
			}
			got := parseErr(body)
			if resp.StatusCode != tc.status || got.Code != tc.code {
				t.Errorf("status %d code %q (%s), want %d %q", resp.StatusCode, got.Code, got.Message, tc.status, tc.code)
			}
			if tc.code != "" && (got.RequestID == "" || got.RequestID != resp.Header.Get("x-amz-request-id")) {
				t.Errorf("request id: body %q header %q", got.RequestID, resp.Header.Get("x-amz-request-id"))
			}
		})
	}
	t.Logf("FIGURE sigv4_scope_mismatch_accepted=%d of %d", accepted, wrong)

	// A real client configured for another region is told so.
	_, err := newClientRegion(e.url, "AKA", "secret-a", "eu-west-1").HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucketA), Key: aws.String("note.md")})
	if status(err) != http.StatusBadRequest {
		t.Errorf("sdk signing for eu-west-1: %v, want 400", err)
	}
	// And the endpoint's region is configurable.
	keys := &keyring{keys: map[string][2]string{"AKA": {"secret-a", bucketA}}}
	srv := newServerAt(t, keys, "eu-west-1")
	if _, err := newClientRegion(srv, "AKA", "secret-a", "eu-west-1").ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucketA)}); err != nil {
		t.Errorf("sdk signing for the endpoint's region eu-west-1: %v", err)
	}
	if _, err := newClientRegion(srv, "AKA", "secret-a", "us-east-1").ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucketA)}); status(err) != http.StatusBadRequest {
		t.Errorf("sdk signing for us-east-1 at an eu-west-1 endpoint: %v, want 400", err)
	}
}

// streamingUpload is a captured STREAMING-AWS4-HMAC-SHA256-PAYLOAD PUT:
// its headers and its framed body, as minio-go's signer makes them.
type streamingUpload struct {
	header http.Header
	framed []byte
}

func captureStreaming(t *testing.T, url, access, secret string, body []byte, at time.Time) streamingUpload {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req = signer.StreamingSignV4(req, access, secret, "", "us-east-1", int64(len(body)), at, sha256Hasher{sha256.New()})
	framed, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("X-Amz-Content-Sha256"); got != "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" {
		t.Fatalf("signer made payload mode %q", got)
	}
	return streamingUpload{header: req.Header.Clone(), framed: framed}
}

// send PUTs the captured headers with framed as the body.
func (u streamingUpload) send(t *testing.T, url string, framed []byte) (int, s3Err) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(framed))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = u.header.Clone()
	req.ContentLength = int64(len(framed))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, parseErr(b)
}

// chunk is one frame of an aws-chunked body.
type chunk struct {
	sig  string
	data []byte
}

func splitFrames(t *testing.T, framed []byte) []chunk {
	t.Helper()
	var out []chunk
	for len(framed) > 0 {
		line, rest, ok := bytes.Cut(framed, []byte("\r\n"))
		if !ok {
			t.Fatal("bad framing")
		}
		var size int
		var sig string
		if _, err := fmt.Sscanf(strings.Replace(string(line), ";chunk-signature=", " ", 1), "%x %s", &size, &sig); err != nil {
			t.Fatalf("chunk header %q: %v", line, err)
		}
		out = append(out, chunk{sig: sig, data: rest[:size]})
		framed = rest[size+2:]
	}
	return out
}

func joinFrames(cs []chunk) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "%x;chunk-signature=%s\r\n", len(c.data), c.sig)
		b.Write(c.data)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// TestSecuritySigV4ChunkSignatures: a streaming (aws-chunked) upload is
// stored only if every chunk carries the signature chained from the seed
// signature over its own data. A captured upload sent again with a chunk
// altered, its data swapped for another body's, a chunk signature
// changed, chunks from another signed upload spliced in, chunks reordered
// or the final chunk dropped is refused and stores nothing; the intact
// capture is stored exactly. Before, gofakes3 skipped every chunk
// signature and stored whatever body came with the seed.
func TestSecuritySigV4ChunkSignatures(t *testing.T) {
	e := newEnv(t)
	url := e.url + "/" + bucketA + "/streamed.bin"
	body := bytes.Repeat([]byte("the signed body. "), 150<<10/17) // ~150 KiB: 3 data chunks of minio-go's 64 KiB
	other := bytes.Repeat([]byte("ANOTHER BODY!!!! "), 150<<10/17)
	now := time.Now()
	up := captureStreaming(t, url, "AKA", "secret-a", body, now)
	alt := captureStreaming(t, url, "AKA", "secret-a", other, now)
	frames := splitFrames(t, up.framed)
	if len(frames) != 4 {
		t.Fatalf("%d frames, want 3 data chunks and the final one", len(frames))
	}
	altFrames := splitFrames(t, alt.framed)
	edit := func(f func(cs []chunk) []chunk) []byte {
		cs := make([]chunk, len(frames))
		for i, c := range frames {
			cs[i] = chunk{sig: c.sig, data: bytes.Clone(c.data)}
		}
		return joinFrames(f(cs))
	}

	if code, e := up.send(t, url, up.framed); code != http.StatusOK {
		t.Fatalf("intact capture: %d %s %s", code, e.Code, e.Message)
	}
	if got := get(t, e.a, bucketA, "streamed.bin"); !bytes.Equal(got, body) {
		t.Fatalf("intact capture stored %d bytes, want the %d signed", len(got), len(body))
	}

	tests := []struct {
		name   string
		framed []byte
		status int
		code   string
	}{
		{"second chunk altered", edit(func(cs []chunk) []chunk { cs[1].data[100] ^= 1; return cs }), http.StatusForbidden, "SignatureDoesNotMatch"},
		{"another body, same signatures", edit(func(cs []chunk) []chunk {
			for i := range cs {
				cs[i].data = altFrames[i].data
			}
			return cs
		}), http.StatusForbidden, "SignatureDoesNotMatch"},
		{"second chunk signature changed", edit(func(cs []chunk) []chunk {
			cs[1].sig = strings.Repeat("0", 64)
			return cs
		}), http.StatusForbidden, "SignatureDoesNotMatch"},
		{"chunk of another upload spliced in", edit(func(cs []chunk) []chunk { cs[1] = altFrames[1]; return cs }), http.StatusForbidden, "SignatureDoesNotMatch"},
		{"chunks reordered", edit(func(cs []chunk) []chunk { cs[0], cs[1] = cs[1], cs[0]; return cs }), http.StatusForbidden, "SignatureDoesNotMatch"},
		{"last chunk's data altered", edit(func(cs []chunk) []chunk { cs[2].data[0] ^= 1; return cs }), http.StatusForbidden, "SignatureDoesNotMatch"},
		{"final chunk signature changed", edit(func(cs []chunk) []chunk { cs[3].sig = altFrames[3].sig; return cs }), http.StatusForbidden, "SignatureDoesNotMatch"},
		{"final chunk dropped", edit(func(cs []chunk) []chunk { return cs[:3] }), http.StatusBadRequest, "IncompleteBody"},
	}
	// Each attack is made on an object holding another version, which
	// must survive it.
	before := []byte("the version before the attack")
	accepted := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			put(t, e.a, bucketA, "streamed.bin", before)
			code, got := up.send(t, url, tc.framed)
			if code == http.StatusOK {
				accepted++
			}
			if code != tc.status || got.Code != tc.code {
				t.Errorf("status %d code %q (%s), want %d %s", code, got.Code, got.Message, tc.status, tc.code)
			}
			if got.RequestID == "" {
				t.Errorf("error body without RequestId")
			}
			if stored := get(t, e.a, bucketA, "streamed.bin"); !bytes.Equal(stored, before) {
				t.Errorf("the refused upload replaced the object (%d bytes stored)", len(stored))
			}
		})
	}
	// An empty upload is only its final chunk, which must verify too.
	empty := captureStreaming(t, url, "AKA", "secret-a", nil, now)
	put(t, e.a, bucketA, "streamed.bin", before)
	ef := splitFrames(t, empty.framed)
	ef[0].sig = frames[3].sig
	if code, got := empty.send(t, url, joinFrames(ef)); code != http.StatusForbidden || got.Code != "SignatureDoesNotMatch" {
		t.Errorf("empty upload with another final signature: %d %s, want 403 SignatureDoesNotMatch", code, got.Code)
	}
	if stored := get(t, e.a, bucketA, "streamed.bin"); !bytes.Equal(stored, before) {
		t.Errorf("the refused empty upload replaced the object (%d bytes stored)", len(stored))
	}
	if code, got := empty.send(t, url, empty.framed); code != http.StatusOK {
		t.Errorf("intact empty upload: %d %s", code, got.Code)
	}
	t.Logf("FIGURE sigv4_tampered_chunked_uploads_accepted=%d of %d", accepted, len(tests))
	if ents := tmpEntries(t, e.root); ents != 0 {
		t.Errorf("%d temp files left behind", ents)
	}
}

// sha256Hasher is the md5simd.Hasher minio-go's signer wants, over
// crypto/sha256.
type sha256Hasher struct{ hash.Hash }

func (sha256Hasher) Close() {}

// newServerAt serves a fresh endpoint answering to region with keys, and
// creates the buckets of the keys; it returns its URL.
func newServerAt(t *testing.T, keys *keyring, region string) string {
	t.Helper()
	srv, err := s3embed.New(t.TempDir(), keys, nil, s3embed.WithRegion(region))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range keys.keys {
		if err := srv.CreateBucket(context.Background(), v[1]); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

// tmpEntries counts what is left in the endpoint's temp and upload dirs.
func tmpEntries(t *testing.T, root string) int {
	t.Helper()
	n := 0
	for _, d := range []string{".s3tmp", ".s3uploads"} {
		ents, _ := os.ReadDir(filepath.Join(root, d))
		n += len(ents)
	}
	return n
}

// TestStreamingUploadsOfRealClients: minio-go signs its uploads over
// plain HTTP as STREAMING-AWS4-HMAC-SHA256-PAYLOAD, in one PUT and in the
// parts of a multipart upload: both pass the chunk verification and store
// exactly what was sent.
func TestStreamingUploadsOfRealClients(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	seen := map[string]int{}
	var mu sync.Mutex
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			mu.Lock()
			seen[r.Header.Get("X-Amz-Content-Sha256")]++
			mu.Unlock()
		}
		e.srv.Handler().ServeHTTP(w, r)
	}))
	defer rec.Close()
	mc, err := minio.New(strings.TrimPrefix(rec.URL, "http://"), &minio.Options{
		Creds:  miniocreds.NewStaticV4("AKA", "secret-a", ""),
		Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		size int
		opts minio.PutObjectOptions
	}{
		{"single put", 200 << 10, minio.PutObjectOptions{}},
		{"multipart", 11 << 20, minio.PutObjectOptions{PartSize: 5 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("minio-go streaming "), tc.size/19)
			if _, err := mc.PutObject(ctx, bucketA, tc.name, bytes.NewReader(body), int64(len(body)), tc.opts); err != nil {
				t.Fatalf("minio-go put: %v", err)
			}
			if got := get(t, e.a, bucketA, tc.name); !bytes.Equal(got, body) {
				t.Errorf("stored %d bytes, want %d", len(got), len(body))
			}
		})
	}
	if seen["STREAMING-AWS4-HMAC-SHA256-PAYLOAD"] == 0 {
		t.Errorf("minio-go sent no streaming upload (payload modes %v)", seen)
	}
}
