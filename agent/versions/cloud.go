package versions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/aws/smithy-go"
)

// Prefix is where the bucket's versions live. Sync never sees it (the
// engine's filters exclude it, and Basic Memory ignores dot folders):
//
//	.bm-versions/<note path>/~v/<kept>_<reason>_<id>_<device>
//
// Each version is a server-side copy of the object it keeps. A name never
// holds a slash, so a note's versions are the direct children of its
// "~v/" folder, whatever the note is called.
const Prefix = ".bm-versions/"

// versionsDir separates a note's path from its versions' names.
const versionsDir = "/~v/"

// keptFormat is the time in a version's name: sortable, nanoseconds.
const keptFormat = "20060102T150405.000000000Z"

// Cloud is the version store in the bucket, shared by every device of the
// tenant. It reaches the bucket with the device's bucket-scoped key.
type Cloud struct {
	s3     *s3.Client
	bucket string
	device string
	now    func() time.Time
}

// NewCloud returns the store in bucket, reached with client; device names
// the versions this device keeps.
func NewCloud(client *s3.Client, bucket, device string) *Cloud {
	return &Cloud{s3: client, bucket: bucket, device: safeDevice(device), now: time.Now}
}

// safeDevice keeps a device name usable as the last field of a name.
func safeDevice(d string) string {
	d = strings.Map(func(r rune) rune {
		if r == '/' || r < ' ' {
			return '-'
		}
		return r
	}, d)
	if d == "" {
		return "device"
	}
	return d
}

// IsVersionKey reports whether an object key is in the versions prefix.
func IsVersionKey(key string) bool { return strings.HasPrefix(key, Prefix) }

func noteVersionsPrefix(rel string) string { return Prefix + rel + versionsDir }

// parseKey reads a version object's key; ok is false for other keys.
func parseKey(key string, size int64) (Version, bool) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return Version{}, false
	}
	i := strings.LastIndex(rest, versionsDir)
	if i <= 0 {
		return Version{}, false
	}
	rel, name := rest[:i], rest[i+len(versionsDir):]
	if strings.Contains(name, "/") {
		return Version{}, false
	}
	f := strings.SplitN(name, "_", 4)
	if len(f) != 4 || !validReason(f[1]) || len(f[2]) != 9 || f[2][0] != 'c' {
		return Version{}, false
	}
	kept, err := time.Parse(keptFormat, f[0])
	if err != nil {
		return Version{}, false
	}
	return Version{ID: f[2], Path: rel, Side: SideCloud, Size: size, Kept: kept, Reason: f[1], Device: f[3], key: key}, true
}

// CopySource is the x-amz-copy-source of key in bucket: each segment
// URL-escaped.
func CopySource(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return url.PathEscape(bucket) + "/" + strings.Join(segs, "/")
}

// Keep copies the object rel, inside the bucket, into the versions
// prefix. With etag (the object's ETag as listed, quotes optional) the
// copy is made only if the object is still that version, and fails with
// ErrChanged if it is not; without, the version there now is kept. A
// missing object fails with an error wrapping fs.ErrNotExist (and
// ErrChanged, with etag).
func (c *Cloud) Keep(ctx context.Context, rel, etag, reason string) (Version, error) {
	if !validReason(reason) {
		return Version{}, fmt.Errorf("versions: keep %s: unknown reason %q", rel, reason)
	}
	if IsVersionKey(rel) {
		return Version{}, fmt.Errorf("versions: keep %s: a version is not a note", rel)
	}
	v := Version{ID: newID(SideCloud), Path: rel, Side: SideCloud, Kept: c.now().UTC(), Reason: reason, Device: c.device}
	v.key = noteVersionsPrefix(rel) + v.Kept.Format(keptFormat) + "_" + reason + "_" + v.ID + "_" + c.device
	in := &s3.CopyObjectInput{
		Bucket:     aws.String(c.bucket),
		Key:        aws.String(v.key),
		CopySource: aws.String(CopySource(c.bucket, rel)),
	}
	if etag != "" {
		in.CopySourceIfMatch = aws.String(quoteETag(etag))
	}
	_, err := c.s3.CopyObject(ctx, in)
	switch {
	case err == nil:
	case isCode(err, "PreconditionFailed") || httpStatus(err) == http.StatusPreconditionFailed:
		return Version{}, fmt.Errorf("versions: keep %s: %w", rel, ErrChanged)
	case isCode(err, "NoSuchKey") || httpStatus(err) == http.StatusNotFound:
		if etag != "" {
			return Version{}, fmt.Errorf("versions: keep %s: %w: %w", rel, ErrChanged, fs.ErrNotExist)
		}
		return Version{}, fmt.Errorf("versions: keep %s: %w", rel, fs.ErrNotExist)
	default:
		return Version{}, fmt.Errorf("versions: keep %s: %w", rel, err)
	}
	head, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(v.key)})
	if err == nil && head.ContentLength != nil {
		v.Size = *head.ContentLength
	}
	return v, nil
}

// quoteETag puts an ETag in the quotes S3 conditions want.
func quoteETag(etag string) string {
	if strings.HasPrefix(etag, `"`) {
		return etag
	}
	return `"` + etag + `"`
}

// List returns the kept versions of the note rel, newest first.
func (c *Cloud) List(ctx context.Context, rel string) ([]Version, error) {
	vs, err := c.list(ctx, noteVersionsPrefix(rel), "/")
	if err != nil {
		return nil, fmt.Errorf("versions: list %s: %w", rel, err)
	}
	return vs, nil
}

// All returns every version in the bucket, newest first.
func (c *Cloud) All(ctx context.Context) ([]Version, error) {
	vs, err := c.list(ctx, Prefix, "")
	if err != nil {
		return nil, fmt.Errorf("versions: list: %w", err)
	}
	return vs, nil
}

func (c *Cloud) list(ctx context.Context, prefix, delimiter string) ([]Version, error) {
	in := &s3.ListObjectsV2Input{Bucket: aws.String(c.bucket), Prefix: aws.String(prefix)}
	if delimiter != "" {
		in.Delimiter = aws.String(delimiter)
	}
	var out []Version
	p := s3.NewListObjectsV2Paginator(c.s3, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			if v, ok := parseKey(aws.ToString(o.Key), aws.ToInt64(o.Size)); ok {
				out = append(out, v)
			}
		}
	}
	SortNewestFirst(out)
	return out, nil
}

// Open returns the content of the version id of the note rel.
func (c *Cloud) Open(ctx context.Context, rel, id string) (io.ReadCloser, Version, error) {
	vs, err := c.List(ctx, rel)
	if err != nil {
		return nil, Version{}, err
	}
	for _, v := range vs {
		if v.ID != id {
			continue
		}
		out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(v.key)})
		if isCode(err, "NoSuchKey") {
			return nil, Version{}, fmt.Errorf("versions: open %s %s: %w", rel, id, ErrNotFound)
		}
		if err != nil {
			return nil, Version{}, fmt.Errorf("versions: open %s %s: %w", rel, id, err)
		}
		return out.Body, v, nil
	}
	return nil, Version{}, fmt.Errorf("versions: open %s %s: %w", rel, id, ErrNotFound)
}

// Prune removes the versions kept longer ago than maxAge (0: none by age),
// then the oldest while the versions take more than maxBytes (0: no cap).
// Every device prunes with its own settings; the strictest wins.
func (c *Cloud) Prune(ctx context.Context, maxAge time.Duration, maxBytes int64) (PruneResult, error) {
	all, err := c.All(ctx)
	if err != nil {
		return PruneResult{}, fmt.Errorf("versions: prune: %w", err)
	}
	cut := c.now().Add(-maxAge)
	var keep, drop []Version
	var total int64
	for _, v := range all {
		if maxAge > 0 && v.Kept.Before(cut) {
			drop = append(drop, v)
			continue
		}
		keep = append(keep, v)
		total += v.Size
	}
	for maxBytes > 0 && total > maxBytes && len(keep) > 0 {
		v := keep[len(keep)-1]
		keep = keep[:len(keep)-1]
		total -= v.Size
		drop = append(drop, v)
	}
	res := PruneResult{Kept: len(keep), KeptBytes: total}
	for start := 0; start < len(drop); start += 1000 {
		batch := drop[start:min(start+1000, len(drop))]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, v := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(v.key)}
		}
		out, err := c.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(c.bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return res, fmt.Errorf("versions: prune: %w", err)
		}
		failed := map[string]bool{}
		for _, e := range out.Errors {
			failed[aws.ToString(e.Key)] = true
		}
		for _, v := range batch {
			if !failed[v.key] {
				res.Removed++
				res.RemovedBytes += v.Size
			}
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return res, fmt.Errorf("versions: prune: %d versions not removed: %s: %s", len(out.Errors), aws.ToString(e.Key), aws.ToString(e.Message))
		}
	}
	return res, nil
}

// isCode reports whether err is an S3 API error with one of codes.
func isCode(err error, codes ...string) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	for _, c := range codes {
		if apiErr.ErrorCode() == c {
			return true
		}
	}
	return false
}

// httpStatus is the HTTP status of an S3 error answer (0 if none).
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}
