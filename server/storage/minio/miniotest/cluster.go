package miniotest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Cluster is a distributed MinIO: several minio processes on loopback,
// each with its own drives, serving one erasure-coded pool, as MinIO runs
// on several machines. Every node answers the whole S3 and admin API with
// the same root credentials; buckets, IAM (service accounts and their
// policies) and bucket quotas are the cluster's, whichever node is asked.
//
// MinIO picks the parity (EC:2 for four drives): with four drives, reads
// need two of them and writes three, so a cluster of four one-drive nodes
// keeps reading and writing with one node down, and one of two two-drive
// nodes keeps reading only.
type Cluster struct {
	// Nodes are the cluster's servers, in the order of their drives.
	Nodes []*Server
	dir   string
}

// ClusterPath is the health route that answers 200 when a node's cluster
// has write quorum (what a load balancer in front of MinIO checks).
const ClusterPath = "/minio/health/cluster"

// StartCluster runs a distributed MinIO of nodes processes with drives
// drives each until the test ends, and waits until every node says the
// cluster is healthy. Without the binary the test is skipped, or fails
// under CI.
func StartCluster(t testing.TB, nodes, drives int) *Cluster {
	t.Helper()
	c, err := NewCluster(nodes, drives)
	if err != nil {
		Need(t, err)
	}
	t.Cleanup(c.Stop)
	return c
}

// NewCluster is StartCluster until Stop (for TestMain or a shared
// cluster). MinIO needs at least four drives in all (nodes × drives) for
// a distributed setup.
func NewCluster(nodes, drives int) (*Cluster, error) {
	if nodes < 2 || drives < 1 || nodes*drives < 4 {
		return nil, fmt.Errorf("miniotest: a cluster of %d nodes × %d drives: MinIO wants at least 2 nodes and 4 drives", nodes, drives)
	}
	bin, err := exec.LookPath("minio")
	if err != nil {
		return nil, ErrNoMinIO
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port taken between pick and bind
		c, err := startCluster(bin, nodes, drives)
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startCluster(bin string, nodes, drives int) (_ *Cluster, err error) {
	dir, err := os.MkdirTemp("", "bm-minio-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	addrs, err := freeAddrs(2 * nodes) // each node's API and console
	if err != nil {
		return nil, err
	}
	// Every node is started with every drive, listed in full: drive d of
	// node i is http://ADDR_i/DIR/n<i>/d<d>. (MinIO's {1...n} expansion
	// would pair every address with every path.)
	var endpoints []string
	for i := range nodes {
		for d := range drives {
			endpoints = append(endpoints, fmt.Sprintf("http://%s%s", addrs[i], filepath.ToSlash(filepath.Join(dir, fmt.Sprintf("n%d", i+1), fmt.Sprintf("d%d", d+1)))))
		}
	}
	for i := range nodes {
		// In a container MinIO refuses to take a loopback address for a
		// node of its own unless told which one is local.
		env := []string{"_MINIO_SERVER_LOCAL=" + addrs[i]}
		c.Nodes = append(c.Nodes, &Server{
			URL:   "http://" + addrs[i],
			node:  newNode(bin, addrs[i], addrs[nodes+i], env, endpoints...),
			ready: ClusterPath,
		})
	}
	for _, n := range c.Nodes {
		if err := n.node.start(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// WaitReady waits until every running node answers ClusterPath with 200
// (all of them after a Restart: the cluster has write quorum, seen from
// each node).
func (c *Cluster) WaitReady(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		if !n.node.running() {
			continue
		}
		wg.Go(func() { errs[i] = n.waitHealthy(ctx, ClusterPath) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop ends every node and removes the drives.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for _, n := range c.Nodes {
		wg.Go(n.node.stop)
	}
	wg.Wait()
	os.RemoveAll(c.dir)
}

// Shared is one cluster per test binary, started on first use: call Get
// from the tests that need it and Stop from TestMain after m.Run.
type Shared struct {
	// Nodes and Drives are the cluster's shape (default 4 nodes of 1 drive).
	Nodes, Drives int

	once    sync.Once
	cluster *Cluster
	err     error
}

// Get starts the cluster on the first call and returns it; without the
// binary the test is skipped, or fails under CI.
func (sh *Shared) Get(t testing.TB) *Cluster {
	t.Helper()
	sh.once.Do(func() {
		nodes, drives := sh.Nodes, sh.Drives
		if nodes == 0 {
			nodes, drives = 4, 1
		}
		start := time.Now()
		sh.cluster, sh.err = NewCluster(nodes, drives)
		if sh.err == nil {
			t.Logf("distributed MinIO of %d nodes × %d drives ready in %v", nodes, drives, time.Since(start).Round(time.Millisecond))
		}
	})
	if sh.err != nil {
		if errors.Is(sh.err, ErrNoMinIO) {
			Need(t, sh.err)
		}
		t.Fatal(sh.err)
	}
	return sh.cluster
}

// Stop stops the cluster if it was started.
func (sh *Shared) Stop() {
	if sh.cluster != nil {
		sh.cluster.Stop()
	}
}
