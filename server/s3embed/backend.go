package s3embed

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rclone/gofakes3"

	"github.com/basicmachines-co/bm-agent/internal/atomicfile"
)

// objMeta is what the sidecar of one object holds, and what the in-memory
// index caches. The data file stays the source of truth for content and
// size: at load, a sidecar whose size disagrees with its file is rebuilt.
type objMeta struct {
	Key       string            `json:"key"`
	Size      int64             `json:"size"`
	MD5       string            `json:"md5"` // hex
	Modified  time.Time         `json:"modified"`
	Meta      map[string]string `json:"meta,omitempty"`
	PartSizes []int64           `json:"part_sizes,omitempty"`
	// ETag is the object's S3 ETag (unquoted) where it is not MD5: for an
	// object made by a multipart upload, S3's md5(part MD5s)-parts.
	ETag string `json:"etag,omitempty"`
}

// etag is the object's quoted S3 ETag: the MD5 of its content for a
// single PUT or copy, the multipart form for a multipart upload.
func (m *objMeta) etag() string {
	if m.ETag != "" {
		return `"` + m.ETag + `"`
	}
	return `"` + m.MD5 + `"`
}

// hashHex is the hash gofakes3 is given as the object's and derives the
// ETags it sends and compares from: the MD5, or for a multipart object
// the hash part of its ETag (the server puts the part count back in its
// answers and takes it out of the conditions it is sent; see
// answerWriter and matchPartETags).
func (m *objMeta) hashHex() string {
	if x, ok := multipartHash(m.ETag); ok {
		return x
	}
	return m.MD5
}

// object builds the gofakes3 view of m; contents may be nil (HEAD).
func (m *objMeta) object(contents io.ReadCloser, rng *gofakes3.ObjectRange) *gofakes3.Object {
	meta := make(map[string]string, len(m.Meta)+1)
	for k, v := range m.Meta {
		meta[k] = v
	}
	meta["Last-Modified"] = m.Modified.UTC().Format(http.TimeFormat)
	sum, _ := hex.DecodeString(m.hashHex())
	if contents == nil {
		contents = io.NopCloser(bytes.NewReader(nil))
	}
	return &gofakes3.Object{
		Name:      m.Key,
		Metadata:  meta,
		Size:      m.Size,
		Contents:  contents,
		Hash:      sum,
		Range:     rng,
		PartSizes: m.PartSizes,
	}
}

// bucketIndex caches the sidecars of one bucket, keys kept sorted for
// listing. mu also serialises commits (rename + sidecar) in the bucket.
type bucketIndex struct {
	mu     sync.RWMutex
	loaded bool
	keys   []string
	objs   map[string]*objMeta
	// gen changes (to a process-wide new value) whenever the index does;
	// see Server.BucketFingerprint.
	gen uint64
	// objBytes is the size of the objects, partBytes that of the parts
	// of the bucket's unfinished multipart uploads, reserved the room
	// held by writes in flight (see quota.go).
	objBytes, partBytes, reserved int64
}

func (x *bucketIndex) put(m *objMeta) {
	if old, ok := x.objs[m.Key]; ok {
		x.objBytes -= old.Size
	} else {
		i, _ := slices.BinarySearch(x.keys, m.Key)
		x.keys = slices.Insert(x.keys, i, m.Key)
	}
	x.objBytes += m.Size
	x.objs[m.Key] = m
	x.gen = nextGen()
}

func (x *bucketIndex) remove(key string) {
	old, ok := x.objs[key]
	if !ok {
		return
	}
	x.objBytes -= old.Size
	delete(x.objs, key)
	if i, found := slices.BinarySearch(x.keys, key); found {
		x.keys = slices.Delete(x.keys, i, i+1)
	}
	x.gen = nextGen()
}

// sizeOf returns the size of the object key (0 if there is none).
func (x *bucketIndex) sizeOf(key string) int64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if m := x.objs[key]; m != nil {
		return m.Size
	}
	return 0
}

// backend is a gofakes3.Backend and gofakes3.MultipartBackend storing
// buckets as directories under root.
type backend struct {
	root string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucketIndex

	upMu    sync.Mutex
	uploads map[gofakes3.UploadID]*upload

	quotas *quotas // nil: no quotas
}

var (
	_ gofakes3.Backend          = (*backend)(nil)
	_ gofakes3.MultipartBackend = (*backend)(nil)
)

func newBackend(root string, log *slog.Logger) (*backend, error) {
	for _, d := range []string{root, filepath.Join(root, metaDirName)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("s3embed: create %s: %w", d, err)
		}
	}
	// Temp files and parts of uploads that were in flight when the process
	// stopped are garbage: gofakes3 keeps uploads in memory only.
	for _, d := range []string{tmpDirName, uploadsDirName} {
		p := filepath.Join(root, d)
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("s3embed: clean %s: %w", p, err)
		}
		if err := os.MkdirAll(p, 0o750); err != nil {
			return nil, fmt.Errorf("s3embed: create %s: %w", p, err)
		}
	}
	return &backend{
		root:    root,
		log:     log,
		now:     time.Now,
		buckets: map[string]*bucketIndex{},
		uploads: map[gofakes3.UploadID]*upload{},
	}, nil
}

func (b *backend) bucketDir(name string) string { return filepath.Join(b.root, name) }
func (b *backend) metaDir(name string) string   { return filepath.Join(b.root, metaDirName, name) }
func (b *backend) tmpDir() string               { return filepath.Join(b.root, tmpDirName) }

// index returns the loaded index of bucket name, or NoSuchBucket.
func (b *backend) index(name string) (*bucketIndex, error) {
	if !validBucket(name) {
		return nil, gofakes3.BucketNotFound(name)
	}
	st, err := os.Stat(b.bucketDir(name))
	b.mu.Lock()
	if err != nil || !st.IsDir() {
		delete(b.buckets, name)
		b.mu.Unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("s3embed: stat bucket %s: %w", name, err)
		}
		return nil, gofakes3.BucketNotFound(name)
	}
	idx := b.buckets[name]
	if idx == nil {
		idx = &bucketIndex{}
		b.buckets[name] = idx
	}
	b.mu.Unlock()

	idx.mu.RLock()
	loaded := idx.loaded
	idx.mu.RUnlock()
	if loaded {
		return idx, nil
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if !idx.loaded {
		if err := b.load(name, idx); err != nil {
			return nil, err
		}
		idx.loaded = true
	}
	return idx, nil
}

// load reconciles the sidecars of bucket with its data files: it reads
// every sidecar, walks the data tree (directory entries only), rebuilds a
// sidecar whose size disagrees with its file or is missing (hashing that
// file), and drops sidecars whose file is gone.
func (b *backend) load(name string, idx *bucketIndex) error {
	start := time.Now()
	objs := map[string]*objMeta{}
	mdir := b.metaDir(name)
	err := filepath.WalkDir(mdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == mdir {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() || !strings.HasSuffix(p, ".json") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var m objMeta
		if json.Unmarshal(data, &m) != nil || filepath.Join(mdir, sidecarName(m.Key)) != p {
			b.log.Warn("s3embed: ignoring bad sidecar", "bucket", name, "path", p)
			return nil
		}
		objs[m.Key] = &m
		return nil
	})
	if err != nil {
		return fmt.Errorf("s3embed: load sidecars of %s: %w", name, err)
	}

	bdir := b.bucketDir(name)
	seen := map[string]bool{}
	var repaired int
	err = filepath.WalkDir(bdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(bdir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if _, err := keyPath(bdir, key); err != nil {
			b.log.Warn("s3embed: ignoring file with unusable key", "bucket", name, "path", p)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		seen[key] = true
		if m := objs[key]; m != nil && m.Size == info.Size() {
			return nil
		}
		sum, err := hashFile(p)
		if err != nil {
			return err
		}
		m := &objMeta{Key: key, Size: info.Size(), MD5: sum, Modified: info.ModTime().UTC()}
		if old := objs[key]; old != nil {
			m.Meta = old.Meta
		}
		if err := b.writeSidecar(name, m); err != nil {
			return err
		}
		objs[key] = m
		repaired++
		return nil
	})
	if err != nil {
		return fmt.Errorf("s3embed: load data of %s: %w", name, err)
	}
	for key := range objs {
		if !seen[key] && !isDirMarker(key) {
			delete(objs, key)
			if err := os.Remove(filepath.Join(mdir, sidecarName(key))); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("s3embed: drop stale sidecar: %w", err)
			}
			repaired++
		}
	}
	idx.objs = objs
	idx.keys = make([]string, 0, len(objs))
	idx.objBytes = 0
	for k, m := range objs {
		idx.keys = append(idx.keys, k)
		idx.objBytes += m.Size
	}
	slices.Sort(idx.keys)
	idx.gen = nextGen()
	b.log.Debug("s3embed: bucket loaded", "bucket", name, "objects", len(objs), "repaired", repaired, "took", time.Since(start))
	return nil
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeAtomic replaces p with data (see package atomicfile), staging the
// temporary file in the endpoint's own temp dir (cleaned at start) so the
// sidecar dirs never hold one.
func (b *backend) writeAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	return atomicfile.WriteFileVia(b.tmpDir(), p, data, 0o600)
}

// prepareSidecar writes m's sidecar under a temporary name, synced, for
// commit to rename into place.
func (b *backend) prepareSidecar(bucket string, m *objMeta) (*atomicfile.Pending, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(b.metaDir(bucket), sidecarName(m.Key))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("s3embed: write sidecar: %w", err)
	}
	pend, err := atomicfile.Prepare(b.tmpDir(), p, data, 0o600)
	if err != nil {
		return nil, fmt.Errorf("s3embed: write sidecar: %w", err)
	}
	return pend, nil
}

func (b *backend) writeSidecar(bucket string, m *objMeta) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := b.writeAtomic(filepath.Join(b.metaDir(bucket), sidecarName(m.Key)), data); err != nil {
		return fmt.Errorf("s3embed: write sidecar: %w", err)
	}
	return nil
}

// s3Error returns err itself if it is an S3 error gofakes3 can send (it
// type-switches, so such errors must not be wrapped), else nil.
func s3Error(err error) gofakes3.Error {
	var e gofakes3.Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// spool copies r into a new synced temp file, returning its path, size and
// MD5. On error the temp file is removed.
func (b *backend) spool(r io.Reader, dir, pattern string) (path string, n int64, sum string, err error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", 0, "", fmt.Errorf("s3embed: temp file: %w", err)
	}
	h := md5.New()
	n, err = io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		if e := s3Error(err); e != nil {
			return "", 0, "", e
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// The client stopped sending before Content-Length bytes.
			return "", 0, "", gofakes3.ErrIncompleteBody
		}
		return "", 0, "", fmt.Errorf("s3embed: write body: %w", err)
	}
	return f.Name(), n, hex.EncodeToString(h.Sum(nil)), nil
}

var errConflict = gofakes3.ErrorMessage(gofakes3.ErrInvalidRequest,
	"the key conflicts with an existing object: on this server a key cannot be both an object and a prefix of another key's path")

// commit moves the spooled file tmp into place as key and records m. For
// a directory marker tmp must be empty and is discarded. The request's
// If-Match and If-None-Match conditions (carried by ctx) are checked
// against the object there now, under the bucket's lock, so a conditional
// write never replaces a version its writer did not see. Under the same
// lock the write's reservation becomes usage, and partsFreed bytes of
// multipart parts (those of the upload it completes) leave the usage.
func (b *backend) commit(ctx context.Context, bucket string, idx *bucketIndex, tmp string, m *objMeta, res *reservation, partsFreed int64) error {
	defer func() { _ = os.Remove(tmp) }() // no-op after a successful rename
	p, err := keyPath(b.bucketDir(bucket), m.Key)
	if err != nil {
		return err
	}
	// The sidecar is written and synced before the bucket's lock is
	// taken, so concurrent writes spend their syncs in parallel; under
	// the lock there are only the renames.
	sidecar, err := b.prepareSidecar(bucket, m)
	if err != nil {
		return err
	}
	defer sidecar.Abort() // no-op after its commit
	if err := b.commitLocked(ctx, idx, p, tmp, m, sidecar, res, partsFreed); err != nil {
		return err
	}
	atomicfile.SyncDir(p)
	sidecar.SyncDir()
	return nil
}

// commitLocked is commit's part under the bucket's lock: the write
// conditions checked, the object and its sidecar renamed into place,
// the index updated.
func (b *backend) commitLocked(ctx context.Context, idx *bucketIndex, p, tmp string, m *objMeta, sidecar *atomicfile.Pending, res *reservation, partsFreed int64) error {
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if gofakes3.HasWriteConditions(ctx) {
		cur := idx.objs[m.Key]
		etag := ""
		if cur != nil {
			etag = cur.hashHex()
		}
		if err := gofakes3.CheckWriteConditions(ctx, cur != nil, etag); err != nil {
			return err
		}
	}
	if isDirMarker(m.Key) {
		if m.Size != 0 {
			return errInvalidKey(m.Key)
		}
		if err := os.MkdirAll(p, 0o750); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				return errConflict
			}
			return fmt.Errorf("s3embed: mkdir: %w", err)
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				return errConflict
			}
			return fmt.Errorf("s3embed: mkdir: %w", err)
		}
		if st, err := os.Lstat(p); err == nil && st.IsDir() {
			return errConflict
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("s3embed: rename into place: %w", err)
		}
	}
	if err := sidecar.Commit(); err != nil {
		return fmt.Errorf("s3embed: write sidecar: %w", err)
	}
	idx.put(m)
	idx.partBytes -= partsFreed
	res.releaseLocked()
	return nil
}

// cleanMeta drops what the backend keeps itself (Last-Modified).
func cleanMeta(meta map[string]string) map[string]string {
	out := make(map[string]string, len(meta))
	for k, v := range meta {
		if k == "Last-Modified" {
			continue
		}
		out[k] = v
	}
	return out
}

// ListBuckets implements gofakes3.Backend. For an S3 request (whose
// context carries the key's bucket) it lists that bucket only, never the
// names of other tenants' buckets; the admin Server.ListBuckets lists all.
func (b *backend) ListBuckets(ctx context.Context) ([]gofakes3.BucketInfo, error) {
	entries, err := os.ReadDir(b.root)
	if err != nil {
		return nil, fmt.Errorf("s3embed: list buckets: %w", err)
	}
	only, scoped := ctx.Value(bucketCtxKey{}).(string)
	var out []gofakes3.BucketInfo
	for _, e := range entries {
		if !e.IsDir() || !validBucket(e.Name()) || scoped && e.Name() != only {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, gofakes3.BucketInfo{Name: e.Name(), CreationDate: gofakes3.NewContentTime(info.ModTime().UTC())})
	}
	return out, nil
}

// ListBucket implements gofakes3.Backend from the in-memory index: sorted,
// paginated by page.Marker and page.MaxKeys (<= 0 means no limit), with
// S3 prefix/delimiter semantics. It reads no object data.
func (b *backend) ListBucket(ctx context.Context, name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	idx, err := b.index(name)
	if err != nil {
		return nil, err
	}
	var pfx, delim string
	if prefix != nil {
		if prefix.HasPrefix {
			pfx = prefix.Prefix
		}
		if prefix.HasDelimiter {
			delim = prefix.Delimiter
		}
	}
	maxKeys := page.MaxKeys
	if maxKeys <= 0 {
		maxKeys = int64(^uint64(0) >> 1)
	}

	idx.mu.RLock()
	defer idx.mu.RUnlock()
	keys := idx.keys
	i, _ := slices.BinarySearch(keys, pfx)
	if page.HasMarker {
		j, found := slices.BinarySearch(keys, page.Marker)
		if found {
			j++
		}
		i = max(i, j)
	}
	out := gofakes3.NewObjectList()
	var count int64
	var last string
	for i < len(keys) {
		k := keys[i]
		if !strings.HasPrefix(k, pfx) {
			break
		}
		if delim != "" {
			if d := strings.Index(k[len(pfx):], delim); d >= 0 {
				cp := k[:len(pfx)+d+len(delim)]
				if !page.HasMarker || cp > page.Marker {
					if count == maxKeys {
						out.IsTruncated = true
						break
					}
					out.AddPrefix(cp)
					count++
					last = cp
				}
				// Skip every key under cp: they are contiguous.
				rest := keys[i:]
				i += sort.Search(len(rest), func(x int) bool { return !strings.HasPrefix(rest[x], cp) })
				continue
			}
		}
		if count == maxKeys {
			out.IsTruncated = true
			break
		}
		m := idx.objs[k]
		out.Add(&gofakes3.Content{
			Key:          k,
			LastModified: gofakes3.NewContentTime(m.Modified),
			ETag:         m.etag(),
			Size:         m.Size,
			StorageClass: gofakes3.StorageStandard,
		})
		count++
		last = k
		i++
	}
	if out.IsTruncated {
		out.NextMarker = last
	}
	return out, nil
}

// CreateBucket implements gofakes3.Backend.
func (b *backend) CreateBucket(ctx context.Context, name string) error {
	if err := gofakes3.ValidateBucketName(name); err != nil {
		return err
	}
	if err := os.Mkdir(b.bucketDir(name), 0o750); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
		}
		return fmt.Errorf("s3embed: create bucket %s: %w", name, err)
	}
	if err := os.MkdirAll(b.metaDir(name), 0o750); err != nil {
		return fmt.Errorf("s3embed: create bucket %s: %w", name, err)
	}
	return nil
}

// BucketExists implements gofakes3.Backend.
func (b *backend) BucketExists(ctx context.Context, name string) (bool, error) {
	if !validBucket(name) {
		return false, nil
	}
	st, err := os.Stat(b.bucketDir(name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("s3embed: stat bucket %s: %w", name, err)
	}
	return st.IsDir(), nil
}

// DeleteBucket implements gofakes3.Backend: only an empty bucket goes.
func (b *backend) DeleteBucket(ctx context.Context, name string) error {
	idx, err := b.index(name)
	if err != nil {
		return err
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if len(idx.keys) > 0 {
		return gofakes3.ResourceError(gofakes3.ErrBucketNotEmpty, name)
	}
	if err := os.RemoveAll(b.bucketDir(name)); err != nil {
		return fmt.Errorf("s3embed: delete bucket %s: %w", name, err)
	}
	if err := os.RemoveAll(b.metaDir(name)); err != nil {
		return fmt.Errorf("s3embed: delete bucket %s: %w", name, err)
	}
	b.mu.Lock()
	delete(b.buckets, name)
	b.mu.Unlock()
	return nil
}

// lookupLocked returns the data path and metadata of key, or NoSuchKey.
// The caller holds idx.mu (read).
func (b *backend) lookupLocked(bucket string, idx *bucketIndex, key string) (string, *objMeta, error) {
	p, err := keyPath(b.bucketDir(bucket), key)
	if err != nil {
		return "", nil, err
	}
	m := idx.objs[key]
	if m == nil {
		return "", nil, gofakes3.KeyNotFound(key)
	}
	return p, m, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// GetObject implements gofakes3.Backend.
func (b *backend) GetObject(ctx context.Context, bucket, key string, rangeRequest *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	idx, err := b.index(bucket)
	if err != nil {
		return nil, err
	}
	idx.mu.RLock()
	p, m, err := b.lookupLocked(bucket, idx, key)
	if err != nil {
		idx.mu.RUnlock()
		return nil, err
	}
	rng, err := rangeRequest.Range(m.Size)
	if err != nil {
		idx.mu.RUnlock()
		return nil, err
	}
	noteObject(ctx, m)
	if m.Size == 0 || isDirMarker(key) {
		idx.mu.RUnlock()
		return m.object(nil, rng), nil
	}
	// Open under the lock so file and metadata belong together; the open
	// file keeps its content even if the key is replaced meanwhile.
	f, err := os.Open(p)
	idx.mu.RUnlock()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, gofakes3.KeyNotFound(key)
		}
		return nil, fmt.Errorf("s3embed: open object: %w", err)
	}
	var contents io.ReadCloser = f
	if rng != nil {
		if _, err := f.Seek(rng.Start, io.SeekStart); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("s3embed: seek object: %w", err)
		}
		contents = readCloser{io.LimitReader(f, rng.Length), f}
	}
	return m.object(contents, rng), nil
}

// HeadObject implements gofakes3.Backend without touching the data file.
func (b *backend) HeadObject(ctx context.Context, bucket, key string) (*gofakes3.Object, error) {
	idx, err := b.index(bucket)
	if err != nil {
		return nil, err
	}
	idx.mu.RLock()
	defer idx.mu.RUnlock()
	_, m, err := b.lookupLocked(bucket, idx, key)
	if err != nil {
		return nil, err
	}
	noteObject(ctx, m)
	return m.object(nil, nil), nil
}

// DeleteObject implements gofakes3.Backend; a missing key is not an error.
func (b *backend) DeleteObject(ctx context.Context, bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	idx, err := b.index(bucket)
	if err != nil {
		return gofakes3.ObjectDeleteResult{}, err
	}
	return gofakes3.ObjectDeleteResult{}, b.deleteOne(bucket, idx, key)
}

func (b *backend) deleteOne(bucket string, idx *bucketIndex, key string) error {
	bdir := b.bucketDir(bucket)
	p, err := keyPath(bdir, key)
	if err != nil {
		return err
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if _, ok := idx.objs[key]; !ok {
		return nil
	}
	if !isDirMarker(key) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("s3embed: delete object: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(b.metaDir(bucket), sidecarName(key))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("s3embed: delete sidecar: %w", err)
	}
	idx.remove(key)
	// Prune directories left empty, so that a deleted "a/b" does not
	// stop a later "a" from being stored. Remove fails on non-empty dirs.
	dir := filepath.Dir(p)
	if isDirMarker(key) {
		dir = p
	}
	for dir != bdir && strings.HasPrefix(dir, bdir+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	return nil
}

// PutObject implements gofakes3.Backend: the body is spooled to a temp
// file (MD5 computed on the way), then renamed into place.
func (b *backend) PutObject(ctx context.Context, bucket, key string, meta map[string]string, input io.Reader, size int64) (gofakes3.PutObjectResult, error) {
	idx, err := b.index(bucket)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	if _, err := keyPath(b.bucketDir(bucket), key); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	if isDirMarker(key) && size > 0 {
		return gofakes3.PutObjectResult{}, errInvalidKey(key)
	}
	// The room is reserved before a byte of the body is read: from its
	// declared length, or as it arrives when there is none.
	res, err := b.reserve(ctx, bucket, idx, idx.sizeOf(key), size)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	defer res.release()
	if res != nil {
		input = &quotaReader{r: input, res: res}
	}
	tmp, n, sum, err := b.spool(input, b.tmpDir(), "put-*")
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	if size >= 0 && n != size {
		_ = os.Remove(tmp)
		return gofakes3.PutObjectResult{}, gofakes3.ErrIncompleteBody
	}
	m := &objMeta{Key: key, Size: n, MD5: sum, Modified: b.now().UTC(), Meta: cleanMeta(meta)}
	if err := b.commit(ctx, bucket, idx, tmp, m, res, 0); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	return gofakes3.PutObjectResult{ETag: m.etag()}, nil
}

// DeleteMulti implements gofakes3.Backend.
func (b *backend) DeleteMulti(ctx context.Context, bucket string, objects ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	idx, err := b.index(bucket)
	if err != nil {
		return res, err
	}
	for _, key := range objects {
		if err := b.deleteOne(bucket, idx, key); err != nil {
			er := gofakes3.ErrorResult{Key: key, Code: gofakes3.ErrInternal, Message: "delete failed"}
			if e := s3Error(err); e != nil {
				er.Code, er.Message = e.ErrorCode(), e.Error()
			} else {
				b.log.Error("s3embed: multi-delete", "bucket", bucket, "err", err)
			}
			res.Error = append(res.Error, er)
			continue
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: key})
	}
	return res, nil
}

// CopyObject implements gofakes3.Backend.
func (b *backend) CopyObject(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	var res gofakes3.CopyObjectResult
	src, err := b.GetObject(ctx, srcBucket, srcKey, nil)
	if err != nil {
		return res, err
	}
	defer src.Contents.Close()
	didx, err := b.index(dstBucket)
	if err != nil {
		return res, err
	}
	if _, err := keyPath(b.bucketDir(dstBucket), dstKey); err != nil {
		return res, err
	}
	if isDirMarker(dstKey) && src.Size > 0 {
		return res, errInvalidKey(dstKey)
	}
	room, err := b.reserve(ctx, dstBucket, didx, didx.sizeOf(dstKey), src.Size)
	if err != nil {
		return res, err
	}
	defer room.release()
	var contents io.Reader = src.Contents
	if room != nil {
		contents = &quotaReader{r: contents, res: room}
	}
	tmp, n, sum, err := b.spool(contents, b.tmpDir(), "copy-*")
	if err != nil {
		return res, err
	}
	m := &objMeta{Key: dstKey, Size: n, MD5: sum, Modified: b.now().UTC(), Meta: cleanMeta(meta)}
	if err := b.commit(ctx, dstBucket, didx, tmp, m, room, 0); err != nil {
		return res, err
	}
	res.ETag = m.etag()
	res.LastModified = gofakes3.NewContentTime(m.Modified)
	return res, nil
}
