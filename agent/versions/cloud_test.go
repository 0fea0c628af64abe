package versions

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/s3embed/s3test"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
)

// bucket is an S3 bucket with a bucket-scoped key, on one of the servers
// users have: the embedded endpoint and MinIO.
type bucket struct {
	name   string
	client *s3.Client
}

func backends(t *testing.T) map[string]func(t *testing.T) bucket {
	return map[string]func(t *testing.T) bucket{
		"embedded": func(t *testing.T) bucket {
			ep := s3test.Start(t, "", s3test.Key{AccessKey: "AKVERSIONS", SecretKey: "versions-secret-0123456789", Bucket: "tenant-bucket"})
			return bucket{name: "tenant-bucket", client: ep.Client()}
		},
		"minio": func(t *testing.T) bucket {
			srv := miniotest.Start(t)
			name, key := srv.Bucket(t, "versions")
			return bucket{name: name, client: srv.Client(key)}
		},
	}
}

func (b bucket) put(t *testing.T, key, body string) string {
	t.Helper()
	out, err := b.client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(b.name), Key: aws.String(key), Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.ETag)
}

func readAll(t *testing.T, r io.ReadCloser) string {
	t.Helper()
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCloudKeepListOpenPrune(t *testing.T) {
	for name, start := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := start(t)
			c := NewCloud(b.client, b.name, "laptop")
			notes := []string{"a.md", "dir/ünïcode note.md", "dir/~v/odd.md", "plain"}
			etags := map[string]string{}
			for _, n := range notes {
				etags[n] = b.put(t, n, "v1 of "+n)
			}
			kept := map[string]Version{}
			for _, n := range notes {
				v, err := c.Keep(ctx, n, etags[n], ReasonOverwritten)
				if err != nil {
					t.Fatalf("Keep(%s): %v", n, err)
				}
				if v.Size != int64(len("v1 of "+n)) || v.Side != SideCloud || v.Path != n || !strings.HasPrefix(v.ID, "c") {
					t.Errorf("Keep(%s) = %+v", n, v)
				}
				kept[n] = v
			}
			// The object changed since it was listed: nothing is kept.
			b.put(t, "a.md", "v2 of a.md")
			if _, err := c.Keep(ctx, "a.md", etags["a.md"], ReasonOverwritten); !errors.Is(err, ErrChanged) {
				t.Errorf("Keep with a stale ETag = %v, want ErrChanged", err)
			}
			if _, err := c.Keep(ctx, "missing.md", "", ReasonDeleted); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Keep(missing) = %v, want ErrNotExist", err)
			}
			// Without an ETag the version there now is kept.
			v2, err := c.Keep(ctx, "a.md", "", ReasonDeleted)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range notes {
				vs, err := c.List(ctx, n)
				if err != nil {
					t.Fatal(err)
				}
				want := 1
				if n == "a.md" {
					want = 2
				}
				if len(vs) != want {
					t.Errorf("List(%s) = %d versions %v, want %d", n, len(vs), vs, want)
					continue
				}
				r, v, err := c.Open(ctx, n, kept[n].ID)
				if err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, r); got != "v1 of "+n || v.Reason != ReasonOverwritten || v.Device != "laptop" {
					t.Errorf("Open(%s) = %q %+v", n, got, v)
				}
			}
			if vs, _ := c.List(ctx, "a.md"); vs[0].ID != v2.ID || vs[0].Reason != ReasonDeleted {
				t.Errorf("newest of a.md = %+v, want the deleted one", vs[0])
			}
			if _, _, err := c.Open(ctx, "a.md", "c00000000"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Open(unknown) = %v", err)
			}
			all, err := c.All(ctx)
			if err != nil || len(all) != len(notes)+1 {
				t.Fatalf("All = %d, %v", len(all), err)
			}

			// Prune: as if two of them had been kept 40 days ago.
			c.now = func() time.Time { return time.Now().Add(40 * 24 * time.Hour) }
			res, err := c.Prune(ctx, 30*24*time.Hour, 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.Removed != len(notes)+1 || res.Kept != 0 {
				t.Errorf("prune by age = %+v", res)
			}
			c.now = time.Now
			for i := 0; i < 3; i++ {
				if _, err := c.Keep(ctx, "plain", "", ReasonOverwritten); err != nil {
					t.Fatal(err)
				}
			}
			size := int64(len("v1 of plain"))
			res, err = c.Prune(ctx, 30*24*time.Hour, 2*size)
			if err != nil {
				t.Fatal(err)
			}
			if res.Removed != 1 || res.Kept != 2 || res.KeptBytes != 2*size {
				t.Errorf("prune by size = %+v", res)
			}
			// The notes themselves are untouched.
			out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.name), Key: aws.String("a.md")})
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, out.Body); got != "v2 of a.md" {
				t.Errorf("a.md = %q", got)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		ok   bool
		path string
	}{
		{Prefix + "a.md/~v/20261202T055413.123456789Z_deleted_c0123abcd_my_laptop", true, "a.md"},
		{Prefix + "x/~v/y.md/~v/20261202T055413.123456789Z_conflict_c0123abcd_d", true, "x/~v/y.md"},
		{Prefix + "a.md/~v/20261202T055413.123456789Z_eaten_c0123abcd_d", false, ""},
		{Prefix + "a.md/~v/20261202T055413.123456789Z_deleted_l0123abcd_d", false, ""},
		{Prefix + "a.md/20261202T055413.123456789Z_deleted_c0123abcd_d", false, ""},
		{"a.md/~v/20261202T055413.123456789Z_deleted_c0123abcd_d", false, ""},
	} {
		v, ok := parseKey(tc.key, 3)
		if ok != tc.ok || v.Path != tc.path {
			t.Errorf("parseKey(%q) = %+v, %v", tc.key, v, ok)
		}
		if ok && v.Device == "" {
			t.Errorf("parseKey(%q): no device", tc.key)
		}
	}
}
