package syncer

import (
	"context"
	"net/url"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	rfs "github.com/rclone/rclone/fs"
	"golang.org/x/sync/errgroup"
)

// deviceMetaKey is the S3 user metadata (x-amz-meta-bm-device) each upload
// carries: the name the person gave the device that wrote the object,
// path-escaped (S3 metadata is ASCII). A server-side copy keeps it, so a
// conflict file bisync renames in the bucket still names the device whose
// version it is.
const deviceMetaKey = "bm-device"

// deviceOption is the upload option that records name as the writer.
func deviceOption(name string) rfs.OpenOption {
	return &rfs.HTTPOption{Key: "X-Amz-Meta-" + deviceMetaKey, Value: url.PathEscape(name)}
}

// uploadOptions are the options of an upload of path besides its
// condition: the writing device, unless path is a conflict file holding
// the bucket's version (its writer is not this device and is not known).
func (e *Engine) uploadOptions(path string) []rfs.OpenOption {
	if e.cfg.Device == "" {
		return nil
	}
	if c, ok := parseConflictName(path); ok && c.Device == remoteDeviceLabel {
		return nil
	}
	return []rfs.OpenOption{deviceOption(e.cfg.Device)}
}

// originCache remembers the writer of each conflict file asked about.
type originCache struct {
	mu   sync.Mutex
	byID map[string]string // originKey → device name ("" unknown)
}

// originKey names a conflict file's version: its path and size.
func originKey(c Conflict) string { return c.Path + "\x00" + strconv.FormatInt(c.Size, 10) }

// ConflictOrigins names, for each conflict file in cs, the device that
// wrote its version, as the bucket's copy records it (see deviceMetaKey).
// Files the bucket has not got yet, or that carry no name, are left out;
// a failed lookup is left out and asked again next time. Answers are
// cached by path and size, so a listing asks the bucket only about new
// conflict files (the newest maxOriginLookups of them at a time).
func (e *Engine) ConflictOrigins(ctx context.Context, cs []Conflict) map[string]string {
	out := make(map[string]string, len(cs))
	c := &e.origins
	c.mu.Lock()
	if c.byID == nil {
		c.byID = map[string]string{}
	}
	var ask []Conflict
	for _, cf := range cs {
		if name, ok := c.byID[originKey(cf)]; !ok {
			ask = append(ask, cf)
		} else if name != "" {
			out[cf.Path] = name
		}
	}
	c.mu.Unlock()
	if len(ask) > maxOriginLookups {
		ask = ask[len(ask)-maxOriginLookups:] // the newest
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, cf := range ask {
		g.Go(func() error {
			name, known := e.objectOrigin(gctx, cf.Path)
			c.mu.Lock()
			defer c.mu.Unlock()
			if known {
				c.byID[originKey(cf)] = name
			}
			if name != "" {
				out[cf.Path] = name
			}
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// maxOriginLookups bounds the bucket requests of one ConflictOrigins.
const maxOriginLookups = 64

// objectOrigin reads the writer of the object path; known is false when
// the bucket could not say (not there yet, or a failed request).
func (e *Engine) objectOrigin(ctx context.Context, path string) (name string, known bool) {
	key := backendEncoding("s3").FromStandardPath(path)
	head, err := e.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.cfg.Remote.Bucket), Key: aws.String(key)})
	if err != nil {
		return "", false
	}
	v, ok := head.Metadata[deviceMetaKey]
	if !ok {
		return "", true
	}
	if u, err := url.PathUnescape(v); err == nil {
		v = u
	}
	return v, true
}
