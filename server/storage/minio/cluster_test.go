package minio_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/basicmachines-co/bm-agent/server/storage"
	"github.com/basicmachines-co/bm-agent/server/storage/minio"
	"github.com/basicmachines-co/bm-agent/server/storage/minio/miniotest"
)

// These tests run the provider against a distributed MinIO (four nodes of
// one drive each, erasure-coded, on loopback), started by the first of
// them and stopped by TestMain: what bm-server on several machines
// provisions buckets and keys on. Each asks one node and checks the
// others.

var cluster miniotest.Shared // 4 nodes × 1 drive

// propagation bounds the wait for what one node did to show at another
// (MinIO tells its peers of IAM and bucket metadata changes).
const propagation = 30 * time.Second

// nodeProvider is the provider at node i of the cluster.
func nodeProvider(t *testing.T, c *miniotest.Cluster, i int) *minio.Provider {
	t.Helper()
	return c.Nodes[i].Provider(t)
}

// eventually polls fn until it returns nil or within passes, and returns
// how long it waited.
func eventually(t *testing.T, within time.Duration, what string, fn func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := fn()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func putObject(ctx context.Context, c *s3.Client, bucket, key string, body []byte) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
	return err
}

func getObject(ctx context.Context, c *s3.Client, bucket, key string) (string, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	return string(b), err
}

// TestClusterBuckets: a bucket made through one node is listed by every
// node and can be deleted through another.
func TestClusterBuckets(t *testing.T) {
	ctx := context.Background()
	c := cluster.Get(t)
	b := miniotest.BucketName("tenant-cluster")
	if err := nodeProvider(t, c, 0).CreateBucket(ctx, b); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		names, err := nodeProvider(t, c, i).ListBuckets(ctx)
		if err != nil || !slices.Contains(names, b) {
			t.Errorf("node %d lists %v, %v; want %s among them", i+1, names, err, b)
		}
	}
	if err := nodeProvider(t, c, 1).DeleteBucket(ctx, b); err != nil {
		t.Fatalf("DeleteBucket through node 2: %v", err)
	}
	for i := range c.Nodes {
		names, err := nodeProvider(t, c, i).ListBuckets(ctx)
		if err != nil || slices.Contains(names, b) {
			t.Errorf("after the delete node %d lists %v, %v", i+1, names, err)
		}
	}
	if _, err := nodeProvider(t, c, 2).MintKey(ctx, b); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("MintKey through node 3 for the deleted bucket = %v, want ErrNotFound", err)
	}
}

// TestClusterKeyAcrossNodes: a bucket-scoped key minted through node 1
// reads and writes its bucket through node 2 (and no other bucket);
// revoked through node 2, node 1 refuses it.
func TestClusterKeyAcrossNodes(t *testing.T) {
	ctx := context.Background()
	c := cluster.Get(t)
	p1, p2 := nodeProvider(t, c, 0), nodeProvider(t, c, 1)
	own, other := miniotest.BucketName("tenant-own"), miniotest.BucketName("tenant-other")
	for _, b := range []string{own, other} {
		if err := p1.CreateBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	key, err := p1.MintKey(ctx, own)
	if err != nil {
		t.Fatal(err)
	}
	at1, at2 := c.Nodes[0].Client(key), c.Nodes[1].Client(key)
	waited := eventually(t, propagation, "a key minted through node 1 writes through node 2", func() error {
		return putObject(ctx, at2, own, "notes/a.md", []byte("hello from node 2"))
	})
	t.Logf("the key worked at node 2 %v after it was minted at node 1", waited.Round(time.Millisecond))
	for i, n := range c.Nodes {
		if body, err := getObject(ctx, n.Client(key), own, "notes/a.md"); err != nil || body != "hello from node 2" {
			t.Errorf("GET through node %d = %q, %v", i+1, body, err)
		}
	}
	if err := p2.TestKey(ctx, key, own); err != nil {
		t.Errorf("TestKey through node 2 = %v", err)
	}
	if err := putObject(ctx, at2, other, "x", []byte("x")); apiCode(err) != "AccessDenied" {
		t.Errorf("PUT to another bucket through node 2 = %v, want AccessDenied", err)
	}

	if err := p2.RevokeKey(ctx, key); err != nil {
		t.Fatalf("RevokeKey through node 2: %v", err)
	}
	waited = eventually(t, propagation, "node 1 refuses a key revoked through node 2", func() error {
		_, err := getObject(ctx, at1, own, "notes/a.md")
		if apiCode(err) == "InvalidAccessKeyId" {
			return nil
		}
		return errors.New("still served")
	})
	t.Logf("node 1 refused the key %v after it was revoked at node 2", waited.Round(time.Millisecond))
	for i := range c.Nodes {
		if err := nodeProvider(t, c, i).TestKey(ctx, key, own); err == nil {
			t.Errorf("TestKey through node %d accepts the revoked key", i+1)
		}
	}
	if err := putObject(ctx, at1, own, "notes/b.md", []byte("x")); err == nil {
		t.Error("the revoked key wrote through node 1")
	}
}

// TestClusterQuota: a hard quota set through node 1 holds a key's writes
// through the other nodes; removed through node 2, writes pass again.
func TestClusterQuota(t *testing.T) {
	ctx := context.Background()
	c := cluster.Get(t)
	p1, p2 := nodeProvider(t, c, 0), nodeProvider(t, c, 1)
	b := miniotest.BucketName("tenant-quota")
	if err := p1.CreateBucket(ctx, b); err != nil {
		t.Fatal(err)
	}
	key, err := p1.MintKey(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p1.RevokeKey(context.Background(), key) })
	if err := p1.SetBucketQuota(ctx, b, 1<<20); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 2<<20)
	for i := 1; i < len(c.Nodes); i++ {
		kc := c.Nodes[i].Client(key)
		eventually(t, propagation, "node refuses a write past a quota set through node 1", func() error {
			err := putObject(ctx, kc, b, "big.bin", big)
			switch {
			case err == nil:
				return errors.New("a 2 MiB object was stored in a bucket with a 1 MiB quota")
			case apiCode(err) != "XMinioAdminBucketQuotaExceeded":
				return err // the key or the quota has not reached the node yet
			}
			return nil
		})
		if err := putObject(ctx, kc, b, "small.bin", []byte("within the quota")); err != nil {
			t.Errorf("a small write through node %d: %v", i+1, err)
		}
	}
	if err := p2.SetBucketQuota(ctx, b, storage.Unlimited); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		kc := n.Client(key)
		eventually(t, propagation, "a write past the removed quota passes", func() error {
			return putObject(ctx, kc, b, "big.bin", big)
		})
	}
}

// TestClusterNodeDown: with one of the four nodes killed, the others
// still read what was written before and take new writes (MinIO's EC:2
// on four drives reads with two and writes with three), and say the
// cluster is healthy; the node comes back and serves what was written
// while it was down.
func TestClusterNodeDown(t *testing.T) {
	ctx := context.Background()
	c := cluster.Get(t)
	if len(c.Nodes) != 4 {
		t.Fatalf("the test wants 4 nodes of 1 drive, the cluster has %d nodes", len(c.Nodes))
	}
	b, key := c.Nodes[0].Bucket(t, "tenant-down")
	for i := range 4 {
		kc := c.Nodes[i].Client(key)
		eventually(t, propagation, "a write through each node", func() error {
			return putObject(ctx, kc, b, fmt.Sprintf("before-%d.md", i+1), []byte("written before"))
		})
	}
	down := c.Nodes[3]
	down.Kill()
	t.Cleanup(func() { // the node comes back for the tests after this one
		if err := down.Restart(context.Background()); err != nil {
			t.Errorf("restart node 4: %v", err)
			return
		}
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.WaitReady(rctx); err != nil {
			t.Errorf("cluster after node 4 came back: %v", err)
		}
	})
	for i := range 3 {
		n := c.Nodes[i]
		kc := n.Client(key)
		for j := range 4 {
			name := fmt.Sprintf("before-%d.md", j+1)
			if body, err := getObject(ctx, kc, b, name); err != nil || body != "written before" {
				t.Errorf("node 4 down: GET %s through node %d = %q, %v", name, i+1, body, err)
			}
		}
		waited := eventually(t, propagation, "a write with node 4 down", func() error {
			return putObject(ctx, kc, b, fmt.Sprintf("while-down-%d.md", i+1), []byte("written while node 4 was down"))
		})
		if waited > time.Second {
			t.Logf("node 4 down: the first write through node %d took %v", i+1, waited.Round(time.Millisecond))
		}
		if !n.Healthy(ctx, miniotest.ClusterPath) {
			t.Errorf("node 4 down: node %d says the cluster is unhealthy", i+1)
		}
	}

	if err := down.Restart(ctx); err != nil {
		t.Fatalf("restart node 4: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := c.WaitReady(rctx); err != nil {
		t.Fatalf("cluster after node 4 came back: %v", err)
	}
	kc := down.Client(key)
	for i := range 3 {
		name := fmt.Sprintf("while-down-%d.md", i+1)
		waited := eventually(t, propagation, "node 4 serves what was written while it was down", func() error {
			body, err := getObject(ctx, kc, b, name)
			if err == nil && body != "written while node 4 was down" {
				t.Fatalf("GET %s through node 4 = %q", name, body)
			}
			return err
		})
		if waited > time.Second {
			t.Logf("node 4 back: it served %s after %v", name, waited.Round(time.Millisecond))
		}
	}
}
