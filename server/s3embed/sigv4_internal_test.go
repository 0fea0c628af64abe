package s3embed

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/signer"
)

type sha256Hasher struct{ hash.Hash }

func (sha256Hasher) Close() {}

// signedStream returns a STREAMING-AWS4-HMAC-SHA256-PAYLOAD body of data
// (minio-go's framing, 64 KiB chunks) and the request's parsed signing.
func signedStream(t testing.TB, data []byte, at time.Time) ([]byte, sigV4Auth) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, "http://127.0.0.1:1/b/k", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req = signer.StreamingSignV4(req, "AKTEST", "secret", "", "us-east-1", int64(len(data)), at, sha256Hasher{sha256.New()})
	framed, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	a, ok := parseSigV4(req)
	if !ok {
		t.Fatal("the signer's request does not parse")
	}
	return framed, a
}

func TestParseChunkHeader(t *testing.T) {
	sig := bytes.Repeat([]byte("a"), 64)
	tests := []struct {
		line string
		size int64
		ok   bool
	}{
		{"10000;chunk-signature=" + string(sig) + "\r\n", 0x10000, true},
		{"0;chunk-signature=" + string(sig) + "\r\n", 0, true},
		{"A;chunk-signature=" + string(sig) + "\r\n", 10, true},
		{"10000;chunk-signature=" + string(sig) + "\n", 0, false},              // bare LF
		{"+10;chunk-signature=" + string(sig) + "\r\n", 0, false},              // sign
		{"-1;chunk-signature=" + string(sig) + "\r\n", 0, false},               // negative
		{" 10;chunk-signature=" + string(sig) + "\r\n", 0, false},              // space
		{"10;chunk-signature=" + string(sig[:63]) + "\r\n", 0, false},          // short signature
		{"10;chunk-signature=" + string(sig) + "0\r\n", 0, false},              // long signature
		{"10;chunk-signature=" + string(sig[:63]) + "g\r\n", 0, false},         // not hex
		{"10;chunk-signature=" + string(sig) + ";x=y\r\n", 0, false},           // extension
		{"10;chunk-signatur=" + string(sig) + "\r\n", 0, false},                // misspelt
		{"fffffffffffffff0;chunk-signature=" + string(sig) + "\r\n", 0, false}, // 16 digits
		{";chunk-signature=" + string(sig) + "\r\n", 0, false},                 // no size
	}
	for _, tc := range tests {
		size, _, ok := parseChunkHeader([]byte(tc.line))
		if ok != tc.ok || ok && size != tc.size {
			t.Errorf("parseChunkHeader(%q) = %d, %v; want %d, %v", tc.line, size, ok, tc.size, tc.ok)
		}
	}
}

// FuzzChunkReader feeds arbitrary bodies to the chunk verifier under the
// signing of a real upload: it never panics, never hands out more than
// the decoded length, and only a body that decodes to exactly the signed
// data reaches EOF without error.
func FuzzChunkReader(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	data := bytes.Repeat([]byte("0123456789abcdef"), 9000) // 144000 bytes: 3 chunks
	framed, auth := signedStream(f, data, at)
	f.Add(framed)
	f.Add(framed[:len(framed)/2])
	small, _ := signedStream(f, []byte("tiny"), at)
	f.Add(small)
	f.Add([]byte("0;chunk-signature=" + string(bytes.Repeat([]byte("0"), 64)) + "\r\n\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		fault := &requestFault{}
		r := newChunkReader(io.NopCloser(bytes.NewReader(body)), auth, "secret", int64(len(data)), fault)
		got, err := io.ReadAll(r)
		if len(got) > len(data) {
			t.Fatalf("read %d bytes, more than the decoded length %d", len(got), len(data))
		}
		if err == nil && !bytes.Equal(got, data) {
			t.Fatalf("a body other than the signed one read to EOF (%d bytes)", len(got))
		}
		if err != nil && fault.err == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("refused without a recorded fault: %v", err)
		}
	})
}

// TestChunkReaderIntact: the signed body decodes to its data, read in
// small and large pieces.
func TestChunkReaderIntact(t *testing.T) {
	at := time.Now()
	for _, n := range []int{0, 1, 64 << 10, 64<<10 + 1, 200 << 10} {
		data := bytes.Repeat([]byte{'x'}, n)
		framed, auth := signedStream(t, data, at)
		for _, piece := range []int{1, 7, 4096, 1 << 20} {
			r := newChunkReader(io.NopCloser(bytes.NewReader(framed)), auth, "secret", int64(n), &requestFault{})
			var out bytes.Buffer
			buf := make([]byte, piece)
			for {
				k, err := r.Read(buf)
				out.Write(buf[:k])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("size %d, pieces of %d: %v", n, piece, err)
				}
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Errorf("size %d, pieces of %d: got %d bytes", n, piece, out.Len())
			}
		}
	}
}
