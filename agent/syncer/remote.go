package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	_ "github.com/rclone/rclone/backend/local" // the local backend
	_ "github.com/rclone/rclone/backend/s3"    // the s3 backend
	"github.com/rclone/rclone/fs"
	"github.com/rclone/rclone/fs/accounting"
	"github.com/rclone/rclone/fs/config/configmap"
	"github.com/rclone/rclone/fs/hash"
	"github.com/rclone/rclone/fs/operations"
	"github.com/rclone/rclone/fs/walk"
)

// remoteName is the rclone name of every engine's S3 file system. The Fs
// is built directly from the backend (never through rclone's Fs cache), so
// two engines never share one; the name is stable because bisync derives
// its listing file names from it.
const remoteName = "bmcloud"

// Remote is a bucket and a bucket-scoped S3 key. Its String, GoString and
// LogValue never show the secret.
type Remote struct {
	Endpoint, Region, AccessKey, SecretKey, Bucket string
}

// String describes the remote without its secret.
func (r Remote) String() string {
	return fmt.Sprintf("s3 bucket %q at %s (key %s)", r.Bucket, r.Endpoint, r.AccessKey)
}

// GoString keeps %#v from printing the secret.
func (r Remote) GoString() string { return "syncer.Remote{" + r.String() + "}" }

// LogValue keeps slog from printing the secret.
func (r Remote) LogValue() slog.Value {
	return slog.GroupValue(slog.String("endpoint", r.Endpoint), slog.String("bucket", r.Bucket),
		slog.String("access_key", r.AccessKey))
}

func (r Remote) validate() error {
	switch {
	case r.Endpoint == "":
		return errors.New("remote endpoint is required")
	case r.Bucket == "":
		return errors.New("remote bucket is required")
	case r.AccessKey == "" || r.SecretKey == "":
		return errors.New("remote key pair is required")
	}
	return nil
}

func newLocalFs(ctx context.Context, dir string) (fs.Fs, error) {
	info, err := fs.Find("local")
	if err != nil {
		return nil, err
	}
	return info.NewFs(ctx, "local", dir, withDefaults(configmap.Simple{}, info.Options))
}

// withDefaults layers a backend's option defaults under m. Unlike
// fs.ConfigMap it reads no rclone.conf, environment variables or flags:
// the remote is exactly what the engine says it is.
func withDefaults(m configmap.Simple, options fs.Options) *configmap.Map {
	cm := configmap.New()
	cm.AddGetter(m, configmap.PriorityNormal)
	cm.AddGetter(OptionDefaults(options), configmap.PriorityDefault)
	return cm
}

// OptionDefaults is a configmap.Getter of a set of rclone options'
// default values (a backend's, or mountlib's).
type OptionDefaults fs.Options

// Get returns key's default value.
func (o OptionDefaults) Get(key string) (string, bool) {
	opt := fs.Options(o).Get(key)
	if opt == nil {
		return "", false
	}
	def := *opt
	def.Value = nil
	return def.String(), true
}

// NewRemoteFs builds the rclone S3 file system of r's bucket in code,
// from r's key pair alone: it reads no rclone.conf, environment variables
// or flags, and never goes through rclone's Fs cache (two callers never
// share one). name is the rclone remote name (it appears in rclone's
// paths, bisync's listing names and the VFS cache layout), so keep it
// stable per use. The s3 backend takes some settings from ctx's rclone
// config when it is built, such as UseServerModTime (fs.AddConfig).
//
// The remote uses path-style addressing and ListObjectsV2, and never
// checks or creates the bucket: a bucket-scoped key cannot.
func NewRemoteFs(ctx context.Context, r Remote, name string) (fs.Fs, error) {
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("syncer: new remote: %w", err)
	}
	if name == "" {
		return nil, errors.New("syncer: new remote: name is required")
	}
	info, err := fs.Find("s3")
	if err != nil {
		return nil, fmt.Errorf("syncer: new remote: %w", err)
	}
	region := r.Region
	if region == "" {
		region = "us-east-1"
	}
	m := configmap.Simple{
		"provider":          "Other",
		"env_auth":          "false",
		"access_key_id":     r.AccessKey,
		"secret_access_key": r.SecretKey,
		"endpoint":          r.Endpoint,
		"region":            region,
		"force_path_style":  "true",
		// a bucket-scoped key cannot create or check buckets
		"no_check_bucket": "true",
		// ListObjectsV2 is what current S3 servers (MinIO, the embedded
		// endpoint, AWS) are best at
		"list_version": "2",
		// The PUT's answer (its ETag) is what an upload needs to know;
		// a HEAD after each would double the requests of a first sync.
		// The listing learns the bucket's times after the pass
		// (settleRemoteTimes).
		"no_head": "true",
	}
	if testUploadCutoff != "" {
		m["upload_cutoff"] = testUploadCutoff
		m["chunk_size"] = "5Mi"
	}
	f, err := info.NewFs(ctx, name, r.Bucket, withDefaults(m, info.Options))
	if err != nil && !errors.Is(err, fs.ErrorIsFile) {
		return nil, fmt.Errorf("syncer: new remote %s: %w", r, err)
	}
	return f, nil
}

// newRemoteFs builds the engine's S3 file system: modtimes come from the
// listing (server modtime), never from a HEAD per object. A request that
// gets no connection gives up after seconds, not rclone's minutes: the
// daemon retries whole passes with backoff, and says it is offline.
func newRemoteFs(ctx context.Context, r Remote) (fs.Fs, error) {
	ctx, ci := fs.AddConfig(ctx)
	ci.UseServerModTime = true
	ci.ConnectTimeout = fs.Duration(remoteConnectTimeout)
	ci.LowLevelRetries = remoteLowLevelRetries
	return NewRemoteFs(ctx, r, remoteName)
}

// How hard the engine's S3 file system tries one request.
const (
	remoteConnectTimeout  = 10 * time.Second
	remoteLowLevelRetries = 3
)

// keepRemoteVersions is the first half of a safe resync: for every object
// that also exists locally with other content, it downloads the bucket's
// version next to the local file under a conflict name, so that the
// path1-wins resync that follows loses nothing. It returns how many
// conflict copies it made (or would make, in a dry run).
func (e *Engine) keepRemoteVersions(ctx context.Context, pc *passCounter, dryRun bool) (int, error) {
	ctx = accounting.WithStatsGroup(ctx, pc.group)
	ctx, _ = engineConfig(ctx)
	stamp := e.passStamp()
	conflicts := 0
	err := walk.ListR(ctx, e.remote, "", true, -1, walk.ListObjects, func(entries fs.DirEntries) error {
		for _, entry := range entries {
			ro, ok := entry.(fs.Object)
			if !ok {
				continue
			}
			lo, err := e.local.NewObject(ctx, ro.Remote())
			if notThere(err) {
				continue
			}
			if err != nil {
				if pc.failPath(SideLocal, ro.Remote(), err) {
					continue // set aside with the pass's other failed paths
				}
				return fmt.Errorf("stat local %q: %w", ro.Remote(), err)
			}
			same, err := sameContent(ctx, lo, ro)
			if err != nil {
				if pc.failPath(SideLocal, ro.Remote(), err) {
					continue
				}
				return fmt.Errorf("compare %q: %w", ro.Remote(), err)
			}
			if same {
				continue
			}
			conflicts++
			pc.addPlan(Change{Side: SideBoth, Action: ActionConflict, Path: ro.Remote()})
			name := e.freeConflictName(ctx, ro.Remote(), stamp, remoteDeviceLabel)
			pc.logger().Info("file differs on both sides: keeping the bucket's version as a conflict copy",
				"file", ro.Remote(), "copy", name)
			if dryRun {
				continue
			}
			if _, err := operations.Copy(ctx, e.local, nil, name, ro); err != nil {
				return fmt.Errorf("download conflict copy %q: %w", name, err)
			}
		}
		return nil
	})
	return conflicts, err
}

// freeConflictName picks a conflict name for a version of remote that
// who (a device, or "cloud") made, that exists on neither side.
func (e *Engine) freeConflictName(ctx context.Context, remote, stamp, who0 string) string {
	for i := 0; ; i++ {
		who := who0
		if i > 0 {
			who = fmt.Sprintf("%s-%d", who0, i)
		}
		name := conflictName(remote, stamp, who)
		_, err1 := e.local.NewObject(ctx, name)
		_, err2 := e.remote.NewObject(ctx, name)
		if errors.Is(err1, fs.ErrorObjectNotFound) && errors.Is(err2, fs.ErrorObjectNotFound) {
			return name
		}
		if i > 100 {
			return name
		}
	}
}

// sameContent compares a local file with an object: sizes, then MD5 (the
// S3 listing's ETag, when it is one), then the bytes.
func sameContent(ctx context.Context, local, remote fs.Object) (bool, error) {
	if local.Size() != remote.Size() {
		return false, nil
	}
	rh, err := remote.Hash(ctx, hash.MD5)
	if err == nil && rh != "" {
		lh, err := local.Hash(ctx, hash.MD5)
		if err != nil {
			return false, err
		}
		return strings.EqualFold(lh, rh), nil
	}
	return operations.CheckIdenticalDownload(ctx, local, remote)
}
