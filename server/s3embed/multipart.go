package s3embed

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rclone/gofakes3"
)

// minPartSize is S3's minimum size of every part but the last.
const minPartSize = 5 << 20

// upload is one multipart upload in progress; its parts are files in dir.
// Uploads live in memory (as gofakes3's own bookkeeping does): a restart
// forgets them and New removes their parts.
type upload struct {
	id          gofakes3.UploadID
	bucket, key string
	meta        map[string]string
	dir         string
	created     time.Time

	mu    sync.Mutex
	parts map[int]partInfo
	// bytes is the size of the parts, counted in the bucket's usage
	// until the upload is completed, aborted or expired (done).
	bytes int64
	done  bool
}

type partInfo struct {
	size int64
	md5  string
}

func (b *backend) getUpload(bucket, key string, id gofakes3.UploadID) (*upload, error) {
	b.upMu.Lock()
	defer b.upMu.Unlock()
	u := b.uploads[id]
	if u == nil || u.bucket != bucket || u.key != key {
		return nil, gofakes3.ErrNoSuchUpload
	}
	return u, nil
}

// CreateMultipartUpload implements gofakes3.MultipartBackend.
func (b *backend) CreateMultipartUpload(ctx context.Context, bucket, key string, meta map[string]string) (gofakes3.UploadID, error) {
	if _, err := b.index(bucket); err != nil {
		return "", err
	}
	if _, err := keyPath(b.bucketDir(bucket), key); err != nil {
		return "", err
	}
	if isDirMarker(key) {
		return "", errInvalidKey(key)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("s3embed: upload id: %w", err)
	}
	id := gofakes3.UploadID(hex.EncodeToString(raw[:]))
	dir := filepath.Join(b.root, uploadsDirName, string(id))
	if err := os.Mkdir(dir, 0o750); err != nil {
		return "", fmt.Errorf("s3embed: create upload: %w", err)
	}
	b.upMu.Lock()
	b.uploads[id] = &upload{id: id, bucket: bucket, key: key, meta: cleanMeta(meta), dir: dir, created: b.now(), parts: map[int]partInfo{}}
	b.upMu.Unlock()
	return id, nil
}

// UploadPart implements gofakes3.MultipartBackend: the part is spooled to
// a file of the upload; a short body fails with IncompleteBody. Parts
// count against the bucket's quota (see quota.go): room for this one is
// reserved before its body is read.
func (b *backend) UploadPart(ctx context.Context, bucket, key string, id gofakes3.UploadID, partNumber int, contentLength int64, body io.Reader) (string, error) {
	u, err := b.getUpload(bucket, key, id)
	if err != nil {
		return "", err
	}
	idx, err := b.index(bucket)
	if err != nil {
		return "", err
	}
	u.mu.Lock()
	replaced := u.parts[partNumber].size
	u.mu.Unlock()
	res, err := b.reserve(ctx, bucket, idx, replaced, contentLength)
	if err != nil {
		return "", err
	}
	defer res.release()
	tmp, n, sum, err := b.spool(body, u.dir, "part-*.tmp")
	if err != nil {
		return "", err
	}
	if n != contentLength {
		_ = os.Remove(tmp)
		return "", gofakes3.ErrIncompleteBody
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		_ = os.Remove(tmp)
		return "", gofakes3.ErrNoSuchUpload
	}
	if err := os.Rename(tmp, filepath.Join(u.dir, strconv.Itoa(partNumber))); err != nil {
		_ = os.Remove(tmp)
		if errors.Is(err, fs.ErrNotExist) { // aborted meanwhile
			return "", gofakes3.ErrNoSuchUpload
		}
		return "", fmt.Errorf("s3embed: store part: %w", err)
	}
	delta := n - u.parts[partNumber].size
	u.parts[partNumber] = partInfo{size: n, md5: sum}
	u.bytes += delta
	idx.mu.Lock()
	idx.partBytes += delta
	res.releaseLocked()
	idx.mu.Unlock()
	return `"` + sum + `"`, nil
}

// CompleteMultipartUpload implements gofakes3.MultipartBackend. The object's
// ETag is S3's: the MD5 of the concatenated binary MD5s of its parts, a
// dash and the number of parts (clients such as rclone check it against
// the parts they sent); its MD5 is still kept (objMeta.MD5).
func (b *backend) CompleteMultipartUpload(ctx context.Context, bucket, key string, id gofakes3.UploadID, input *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	u, err := b.getUpload(bucket, key, id)
	if err != nil {
		return "", "", err
	}
	idx, err := b.index(bucket)
	if err != nil {
		return "", "", err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return "", "", gofakes3.ErrNoSuchUpload
	}
	if len(input.Parts) == 0 {
		return "", "", gofakes3.ErrorMessage(gofakes3.ErrMalformedXML, "you must specify at least one part")
	}
	files := make([]string, 0, len(input.Parts))
	sizes := make([]int64, 0, len(input.Parts))
	partSums := md5.New()
	prev := 0
	for i, in := range input.Parts {
		if in.PartNumber <= prev {
			return "", "", gofakes3.ErrInvalidPartOrder
		}
		prev = in.PartNumber
		p, ok := u.parts[in.PartNumber]
		if !ok || strings.Trim(in.ETag, `"`) != p.md5 {
			return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d was not uploaded or its ETag does not match", in.PartNumber)
		}
		if i < len(input.Parts)-1 && p.size < minPartSize {
			return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "EntityTooSmall: part %d is smaller than 5 MiB and not the last", in.PartNumber)
		}
		files = append(files, filepath.Join(u.dir, strconv.Itoa(in.PartNumber)))
		sizes = append(sizes, p.size)
		raw, err := hex.DecodeString(p.md5)
		if err != nil {
			return "", "", fmt.Errorf("s3embed: part %d md5: %w", in.PartNumber, err)
		}
		partSums.Write(raw)
	}
	r, closeAll, err := openAll(files)
	if err != nil {
		return "", "", err
	}
	tmp, n, sum, err := b.spool(r, b.tmpDir(), "mpu-*")
	closeAll()
	if err != nil {
		return "", "", err
	}
	m := &objMeta{Key: key, Size: n, MD5: sum, Modified: b.now().UTC(), Meta: u.meta, PartSizes: sizes,
		ETag: fmt.Sprintf("%x-%d", partSums.Sum(nil), len(input.Parts))}
	// The object's bytes were counted as parts: the commit moves them
	// (and frees those of the parts left out), so completing never
	// needs room.
	if err := b.commit(ctx, bucket, idx, tmp, m, nil, u.bytes); err != nil {
		return "", "", err
	}
	u.bytes = 0
	b.dropUpload(u)
	return "", m.etag(), nil
}

func openAll(paths []string) (io.Reader, func(), error) {
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	readers := make([]io.Reader, 0, len(paths))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("s3embed: open part: %w", err)
		}
		files = append(files, f)
		readers = append(readers, f)
	}
	return io.MultiReader(readers...), closeAll, nil
}

// dropUpload forgets u and deletes its parts, freeing the bytes they
// held in the bucket's usage. The caller holds u.mu.
func (b *backend) dropUpload(u *upload) {
	u.done = true
	b.upMu.Lock()
	delete(b.uploads, u.id)
	b.upMu.Unlock()
	if u.bytes != 0 {
		if idx, err := b.index(u.bucket); err == nil {
			idx.mu.Lock()
			idx.partBytes -= u.bytes
			idx.mu.Unlock()
		}
		u.bytes = 0
	}
	if err := os.RemoveAll(u.dir); err != nil {
		b.log.Warn("s3embed: remove upload parts", "upload", string(u.id), "err", err)
	}
}

// expireUploads drops the uploads begun before cutoff (see
// Server.ExpireUploads) and returns them.
func (b *backend) expireUploads(cutoff time.Time) []*upload {
	b.upMu.Lock()
	var old []*upload
	for _, u := range b.uploads {
		if u.created.Before(cutoff) {
			old = append(old, u)
		}
	}
	b.upMu.Unlock()
	dropped := old[:0]
	for _, u := range old {
		u.mu.Lock()
		if !u.done {
			b.dropUpload(u)
			dropped = append(dropped, u)
		}
		u.mu.Unlock()
	}
	return dropped
}

// AbortMultipartUpload implements gofakes3.MultipartBackend; aborting an
// unknown upload succeeds.
func (b *backend) AbortMultipartUpload(ctx context.Context, bucket, key string, id gofakes3.UploadID) error {
	u, err := b.getUpload(bucket, key, id)
	if err != nil {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.done {
		b.dropUpload(u)
	}
	return nil
}
