package s3embed

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bucket")
	tests := []struct {
		key  string
		want string // relative to dir; "" means rejected
	}{
		{"note.md", "note.md"},
		{"a/b/c.md", filepath.Join("a", "b", "c.md")},
		{"folder/", "folder"},
		{"with space/ü.md", filepath.Join("with space", "ü.md")},
		{".hidden", ".hidden"},
		{"..dots..", "..dots.."},
		{"", ""},
		{"/", ""},
		{"/abs", ""},
		{"..", ""},
		{"../x", ""},
		{"a/../../x", ""},
		{"a/..", ""},
		{"a/./b", ""},
		{"./a", ""},
		{"a//b", ""},
		{"a\x00b", ""},
		{"a/b//", ""},
		{strings.Repeat("k", 1025), ""},
	}
	for _, tc := range tests {
		got, err := keyPath(dir, tc.key)
		if tc.want == "" {
			if err == nil {
				t.Errorf("keyPath(%q) = %q, want rejection", tc.key, got)
			}
			continue
		}
		if err != nil || got != filepath.Join(dir, tc.want) {
			t.Errorf("keyPath(%q) = %q, %v; want %q", tc.key, got, err, filepath.Join(dir, tc.want))
		}
	}
}

func TestOperation(t *testing.T) {
	tests := []struct{ method, target, copySrc, want string }{
		{"GET", "/", "", "ListBuckets"},
		{"GET", "/b?list-type=2&prefix=x", "", "ListObjectsV2"},
		{"GET", "/b?prefix=x", "", "ListObjects"},
		{"GET", "/b?location", "", "GetBucketLocation"},
		{"HEAD", "/b", "", "HeadBucket"},
		{"PUT", "/b", "", "CreateBucket"},
		{"DELETE", "/b", "", "DeleteBucket"},
		{"POST", "/b?delete", "", "DeleteObjects"},
		{"GET", "/b/k", "", "GetObject"},
		{"HEAD", "/b/k", "", "HeadObject"},
		{"PUT", "/b/k", "", "PutObject"},
		{"PUT", "/b/k", "b/src", "CopyObject"},
		{"DELETE", "/b/k", "", "DeleteObject"},
		{"POST", "/b/k?uploads", "", "CreateMultipartUpload"},
		{"PUT", "/b/k?uploadId=1&partNumber=1", "", "UploadPart"},
		{"PUT", "/b/k?uploadId=1&partNumber=1", "b/src", "UploadPartCopy"},
		{"POST", "/b/k?uploadId=1", "", "CompleteMultipartUpload"},
		{"DELETE", "/b/k?uploadId=1", "", "AbortMultipartUpload"},
		{"GET", "/b/k?uploadId=1", "", "ListParts"},
		{"PATCH", "/b/k", "", "Other"},
	}
	for _, tc := range tests {
		r := httptestRequest(tc.method, tc.target)
		if tc.copySrc != "" {
			r.Header.Set("X-Amz-Copy-Source", tc.copySrc)
		}
		if got := operation(r); got != tc.want {
			t.Errorf("%s %s = %s, want %s", tc.method, tc.target, got, tc.want)
		}
	}
}

func httptestRequest(method, target string) *http.Request {
	return httptest.NewRequest(method, target, nil)
}
